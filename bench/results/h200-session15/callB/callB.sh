#!/usr/bin/env bash
# Session 15, call B (code of .device/rev): where ResNet-50 fp16 b=1 loses ~7 us of GPU time a run against phase 1
# (b8b556f) inside the CUDA graph. Nsight Systems' kernel trace of the graph's nodes (start, end: in-graph durations and
# the gaps between them) for main with branches on and off and for phase 1; Nsight Compute's whole-graph DRAM and L2
# counters for the three; then issue 19's unmeasured int8 rows (b=1 against fp16; MobileNetV2 at b=64 and 256).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 555 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
if [ ! -x "$WORK/old/Batchwise.Cli" ]; then
  rm -rf "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
fi
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
t "ready; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev); ncu=${NCU:-none} nsys=${NSYS:-none}"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
q warm-on 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 40 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
run() { case $1 in on) "$CLI" "${@:2}";; off) BATCHWISE_BRANCHES=off "$CLI" "${@:2}";; old) "$OLD" "${@:2}";; esac; }
export -f run; export CLI OLD
if [ -n "$NSYS" ]; then
  for who in on off old; do
    timeout "$(lim 60)" "$NSYS" profile --trace=cuda --cuda-graph-trace=node --sample=none --cpuctxsw=none -o "$WORK/nsys-$who" --force-overwrite true \
      bash -c "run $who bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.2s --warmup 0.1s --max-windows 3" > "$R/nsys-$who.log" 2>&1
    t "nsys $who exit $?"
    timeout "$(lim 60)" "$NSYS" stats --report cuda_gpu_trace --format csv --output "$R/nsys-$who" "$WORK/nsys-$who.nsys-rep" >> "$R/nsys-$who.log" 2>&1
    t "nsys stats $who exit $? $(ls "$R" | grep -c "nsys-$who.*csv") csv"
  done
  for f in "$R"/nsys-*.csv; do [ -f "$f" ] && xz -9 "$f"; done
fi
if [ -n "$NCU" ]; then
  for who in on off old; do
    timeout "$(lim 60)" "$NCU" --clock-control none --cache-control none --graph-profiling graph --launch-count 30 --csv \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_srcunit_tex_op_read.sum \
      bash -c "run $who bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3" > "$R/ncu-graph-$who.csv" 2> "$R/ncu-graph-$who.log"
    t "ncu graph $who exit $? $(wc -l < "$R/ncu-graph-$who.csv") lines"
  done
fi
timeout "$(lim 60)" "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1; t "optimize r50 int8 exit $?"
timeout "$(lim 60)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-1 90 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1 --json "$R/r50q-1.json"
q r50-fp16-1 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/r50-fp16-1.json"
q m2q 120 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q.json"
q m2-fp16 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64,256 --json "$R/m2-fp16.json"
t "done"
