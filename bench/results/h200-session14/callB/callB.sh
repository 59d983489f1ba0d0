#!/usr/bin/env bash
# Session 14, call B (code of .device/rev): why main's ResNet-50 fp16 b=1 is ~3% under phase 1's (b8b556f). Carries the
# whole CLI (cli-full.tar.xz, no test runtime) and phase 1's overlay. Nsight Compute's per-kernel list of both builds'
# b=1 runs (graph nodes profiled one by one), fixed shapes of both in one run, b=1 alone alternating; then the int8
# route's b=256 profile (issue 19: e46c7b7 and c68c739 first measured here).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 545 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev); ncu=${NCU:-none}"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
q warm-new 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 40 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
if [ -n "$NCU" ]; then
  for who in new old; do
    bin=$CLI; [ $who = old ] && bin=$OLD
    timeout "$(lim 90)" "$NCU" --clock-control none --graph-profiling node --metrics gpu__time_duration.sum --csv --launch-count 400 \
      "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-$who.csv" 2> "$R/ncu-$who.log"
    t "ncu $who exit $? $(wc -l < "$R/ncu-$who.csv") lines"
  done
fi
q fixed-new 45 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-new.json"
q fixed-old 45 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-old.json"
for i in 1 2; do
  q b1-new-$i 20 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-new-$i.json"
  q b1-old-$i 20 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-old-$i.json"
done
q b1-new-timed 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --timed-tactics --json "$R/b1-new-timed.json"
q b1-old-timed 60 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --timed-tactics --json "$R/b1-old-timed.json"
timeout "$(lim 60)" "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
export BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused
q r50q-256 110 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50q-256.json"
t "done"
