#!/usr/bin/env bash
# Session 58 (CALL_SECONDS, default 200; carry .device after staging): issue 16's two ResNet-50 fp16 bars on one card,
# runs queued 20 at a time: b=1 and b=256, twice each, in turn, with the card's clock and power beside them; then, time
# left, Nsight Compute on b=1's kernels with the caches NOT flushed between them (call 2 flushed them: each kernel cold),
# so their sum against the replayed run's time says what the boundaries between kernels cost.
source bench/device/call-lib.sh "${CALL_SECONDS:-200}"
unpack || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv,noheader >> "$R/log.txt"
for round in 1 2; do
  for b in 1 256; do
    q r50-$b-$round 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --queue 20 --duration 2s --warmup 1s -b $b --json "$R/r50-$b-$round.json"
  done
done
nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv,noheader >> "$R/log.txt"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && (( $(left) > 70 )); then
  timeout "$(lim 90)" "$NCU" --clock-control none --cache-control none --graph-profiling node --launch-count 340 \
    --metrics gpu__time_duration.sum,launch__grid_size,dram__bytes_read.sum --csv --page raw \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.03s --warmup 0.01s --max-windows 3 > "$R/ncu-warm-r50-1.csv" 2> "$R/ncu-warm-r50-1.log"
  t "ncu exit $? $(wc -l < "$R/ncu-warm-r50-1.csv") lines"
  xz -9 "$R/ncu-warm-r50-1.csv"
fi
pack
