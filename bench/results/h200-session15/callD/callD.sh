#!/usr/bin/env bash
# Session 15, call D (code of .device/rev): which kernels of ResNet-50 fp16 b=1's graph read from DRAM run after run
# (call C: main's graph reads 432 KB a run from DRAM at 93.2% L2 hits, phase 1's 27 KB at 97.8%). Nsight Compute per
# graph node, caches not flushed: time, DRAM bytes read, L2 hit rate; main (branches on and off) and phase 1.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 555 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
if [ ! -x "$WORK/old/Batchwise.Cli" ]; then
  rm -rf "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
fi
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1 CLI OLD
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "ready; $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader); L2 $(nvidia-smi -q | grep -i 'L2' | head -2 | tr -s ' ' | tr '\n' ' '); git $(cat .device/rev)"
cat > "$WORK/one.sh" <<'SH'
#!/usr/bin/env bash
case $1 in main) exec "$CLI" "${@:2}";; off) BATCHWISE_BRANCHES=off exec "$CLI" "${@:2}";; old) exec "$OLD" "${@:2}";; esac
SH
chmod +x "$WORK/one.sh"
"$WORK/one.sh" main bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.2s --warmup 0.1s > "$R/warm-main.txt" 2>&1
"$WORK/one.sh" old bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.2s --warmup 0.1s > "$R/warm-old.txt" 2>&1
t "warm"
for who in main old off; do
  timeout "$(lim 90)" "$NCU" --clock-control none --cache-control none --graph-profiling node --launch-count 420 --csv \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_op_read.sum \
    "$WORK/one.sh" $who bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-node-$who.csv" 2> "$R/ncu-node-$who.log"
  t "ncu node $who exit $? $(wc -l < "$R/ncu-node-$who.csv") lines"
  xz -9 "$R/ncu-node-$who.csv"
done
t "done"
