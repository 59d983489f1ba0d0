#!/usr/bin/env bash
# Session 35, call 1: HEAD (session 34's defaults: the chained 56x56 end where sixteen warps fit, sixteen warps for the
# 256-channel 1x1 ends) on whichever card came. ResNet-50 int8 symmetric at b=256 against session 33's form
# (BATCHWISE_INT8_CHAIN=off BATCHWISE_INT8_POINTWISE_WARPS=8), alternating, fp16 twice; b=1; 1,000 seeded inputs against
# the fp32 model; the per-layer profile; every 1x1 the own kernel takes on it (BATCHWISE_INT8_CONV=pointwise: the
# reductions too, measured slower with session 27's block kernel) with its profile; two executions in flight (-c 2) for both precisions;
# Int8PointwiseGpuTests (the chained test never passed on a GPU).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1 model=$2 b=$3; shift 3; q "$tag" 60 env BATCHWISE_INT8=on "$@" "$CLI" bench "$model" --engine cuda --precision fp16 -b "$b" --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench "$2" --engine cuda --precision fp16 -b "$3" --duration 400ms --json "$R/$1.json"; }
OLD="BATCHWISE_INT8_CHAIN=off BATCHWISE_INT8_POINTWISE_WARPS=8"
i8 warm "$M" 256
i8 r50qs-256-1 "$M" 256; i8 r50qs-old-256-1 "$M" 256 $OLD; f16 r50-256-1 zoo:resnet50 256
i8 r50qs-256-2 "$M" 256; i8 r50qs-old-256-2 "$M" 256 $OLD; f16 r50-256-2 zoo:resnet50 256
i8 r50qs-pw-256-1 "$M" 256 BATCHWISE_INT8_CONV=pointwise; i8 r50qs-pw-256-2 "$M" 256 BATCHWISE_INT8_CONV=pointwise
q r50qs-pw-prof 60 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50qs-pw-prof.json"
i8 r50qs-1 "$M" 1; f16 r50-1 zoo:resnet50 1
# Two executions in flight (each its own plan, buffers and stream), as a server with two instances runs them.
q r50qs-256-c2 60 env BATCHWISE_INT8=on "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 -c 2 --duration 400ms --json "$R/r50qs-256-c2.json"
q r50-256-c2 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 -c 2 --duration 400ms --json "$R/r50-256-c2.json"
q r50qs-prof 60 env BATCHWISE_INT8=on "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50qs-prof.json"
q r50qs-cmp1000 60 env BATCHWISE_INT8=on "$CLI" compare zoo:resnet50 "$M" --engines cuda,cuda --precision fp16 -b 1000
CLASSES="Int8PointwiseGpuTests" LIMITS="Int8PointwiseGpuTests=180" TESTS=$TESTS OUT=$R/gpu LIMIT=180 DEADLINE=$(( $(left) - 60 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
# The int8 stem under Nsight Compute (its stalls decide whether int8 products would pay there): the first bw_ kernels of
# the plan; the stem is the one with 224-thread blocks.
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && [ "$(left)" -gt 30 ]; then
  timeout "$(( $(left) - 12 ))" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 12 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section InstructionStats --csv --page details \
    env BATCHWISE_INT8=on "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-stem-int8.csv" 2> "$R/ncu-stem-int8.log"
  t "ncu stem exit $? $(wc -l < "$R/ncu-stem-int8.csv") lines"
fi
pack
