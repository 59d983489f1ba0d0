#!/usr/bin/env bash
# PREPARED, NOT RUN (next session; publish of the final commit): what session 38's call 1 meant to measure and could not
# (it passed --max-windows 1; bench takes 3 at least): Nsight Compute's duration, grid, block, registers and DRAM bytes of
# every kernel of ResNet-50 fp16 at b=1 (clocks not locked), so the b=1 time (~317 µs a run, 56 kernels) splits into the
# kernels' own times and the gaps between them; the same with PDL on. A warm cache first, so the profiled process times
# no tactics; the last 56 rows of each CSV are one steady-state graph replay.
source bench/device/call-lib.sh 400
unpack || { pack; exit 1; }
q warm 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --json "$R/warm.json"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
for pdl in off on; do
  [ -n "$NCU" ] || break
  timeout "$(lim 150)" env BATCHWISE_PDL=$pdl "$NCU" --clock-control none --graph-profiling node --launch-skip 200 --launch-count 400 \
    --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,dram__bytes_read.sum \
    --csv --page raw "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.05s --warmup 0.02s --max-windows 3 > "$R/ncu-pdl-$pdl.csv" 2> "$R/ncu-pdl-$pdl.log"
  t "ncu pdl=$pdl exit $? $(wc -l < "$R/ncu-pdl-$pdl.csv") lines"
done
pack
