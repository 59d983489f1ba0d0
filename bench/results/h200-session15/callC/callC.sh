#!/usr/bin/env bash
# Session 15, call C (code of .device/rev): the weights' L2 window (BATCHWISE_L2_PERSIST=on|auto, off by default) against
# the default and phase 1 (b8b556f) on ResNet-50 fp16, b=1 alternating and the fixed shapes; Nsight Compute's whole-graph
# DRAM and L2 counters for the three at b=1; the branch and model GPU tests with the window on.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 555 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests" && cp -r "$WORK/cli" "$WORK/old"
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|2|8|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
q warm-main 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 40 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q verbose-l2on 40 env BATCHWISE_L2_PERSIST=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s --verbose
grep -h "plan built" "$R/verbose-l2on.txt" | cut -c1-260 | tee -a "$R/log.txt"
for i in 1 2; do
  q b1-main-$i 20 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-main-$i.json"
  q b1-l2on-$i 20 env BATCHWISE_L2_PERSIST=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-l2on-$i.json"
  q b1-old-$i 20 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-old-$i.json"
done
q fixed-main 45 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,2,8,64,256 --json "$R/fixed-main.json"
q fixed-l2on 45 env BATCHWISE_L2_PERSIST=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,2,8,64,256 --json "$R/fixed-l2on.json"
q fixed-l2auto 45 env BATCHWISE_L2_PERSIST=auto "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,2,8,64,256 --json "$R/fixed-l2auto.json"
q fixed-old 45 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,2,8,64,256 --json "$R/fixed-old.json"
q bert-main 30 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --json "$R/bert-main.json"
q bert-l2on 30 env BATCHWISE_L2_PERSIST=on "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --json "$R/bert-l2on.json"
if [ -n "$NCU" ]; then
  cat > "$WORK/one.sh" <<'SH'
#!/usr/bin/env bash
case $1 in main) exec "$CLI" "${@:2}";; l2on) BATCHWISE_L2_PERSIST=on exec "$CLI" "${@:2}";; old) exec "$OLD" "${@:2}";; esac
SH
  chmod +x "$WORK/one.sh"; export CLI OLD
  for who in main l2on old; do
    timeout "$(lim 50)" "$NCU" --clock-control none --cache-control none --graph-profiling graph --launch-count 20 --csv \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct \
      "$WORK/one.sh" $who bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-graph-$who.csv" 2> "$R/ncu-graph-$who.log"
    t "ncu graph $who exit $? $(wc -l < "$R/ncu-graph-$who.csv") lines"
  done
fi
BATCHWISE_L2_PERSIST=on BATCHWISE_REQUIRE_GPU=1 timeout "$(lim 100)" "$TESTS" -parallelMode none -class '*.BranchesGpuTests' -class '*.ModelGpuTests' -noColor > "$R/tests-l2on.log" 2>&1
t "Branches+Model GPU tests with the L2 window on: exit $? $(grep -E 'Total:' "$R/tests-l2on.log")"
t "done"
