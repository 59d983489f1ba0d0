#!/usr/bin/env bash
# Session 24, call 2: call 1's Nsight Compute steps again (call 1 passed --max-windows 1, which bench refuses).
source bench/device/call-lib.sh 560
unpack || { pack; exit 1; }
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "ncu=${NCU:-none}"
if [ -n "$NCU" ]; then
  SECT="--section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section InstructionStats --section SchedulerStats --section SourceCounters"
  timeout "$(lim 120)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 2 $SECT --csv --page details \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 --tactics heuristic > "$R/ncu-stem256.csv" 2> "$R/ncu-stem256.log"
  t "ncu stem exit $? $(wc -l < "$R/ncu-stem256.csv") lines"
  timeout "$(lim 150)" "$NCU" --clock-control none --graph-profiling node --launch-count 400 --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed --csv \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 --tactics heuristic > "$R/ncu-b1.csv" 2> "$R/ncu-b1.log"
  t "ncu b1 exit $? $(wc -l < "$R/ncu-b1.csv") lines"
fi
pack
