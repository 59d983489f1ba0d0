#!/usr/bin/env bash
# Session 24, call 1 (main at .device/rev, 5f2192b: session 23's last engine change, the 15 us rule as one predicate, not
# yet run on a GPU): the GPU classes the change touches; ResNet-50 fp16 bench at b=1/8/64/256 and per-layer profiles at
# b=1 and 256; Nsight Compute on the own stem kernel at b=256 (484 us of 5.37 ms in session 22's profile: ~3x its
# compute floor) and every kernel's duration at b=1 (how much of 0.30 ms is kernels and how much the gaps between).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "ncu=${NCU:-none}"
CLASSES="ModelGpuTests MlpGpuTests ShapeGpuTests PlanThreadsGpuTests PointwiseConvGpuTests StemPoolGpuTests SplitKConvGpuTests BranchesGpuTests StemConvGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=170 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50 80 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/r50.json"
q r50-prof 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --profile --duration 300ms --json "$R/r50-prof.json"
if [ -n "$NCU" ]; then
  SECT="--section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section InstructionStats --section SchedulerStats --section SourceCounters"
  timeout "$(lim 120)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 2 $SECT --csv --page details \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 1 > "$R/ncu-stem256.csv" 2> "$R/ncu-stem256.log"
  t "ncu stem exit $? $(wc -l < "$R/ncu-stem256.csv") lines"
  timeout "$(lim 150)" "$NCU" --clock-control none --graph-profiling node --launch-count 400 --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed --csv \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 1 > "$R/ncu-b1.csv" 2> "$R/ncu-b1.log"
  t "ncu b1 exit $? $(wc -l < "$R/ncu-b1.csv") lines"
fi
pack
