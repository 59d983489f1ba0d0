#!/usr/bin/env bash
# Session 22, call 4 (main at .device/rev: the fused stem + matmul tactics timed with their beta and residual): ResNet-50
# fp16 at b=1/8/64/256 with the heuristics' choices and with timed tactics (a cold timing cache, then warm), the timed plan
# at b=256 layer by layer; then the GPU test classes last run in session 20 and those the stem or the timing touch.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
B="bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256"
q r50-heur 45 "$CLI" $B --json "$R/r50-heur.json"
q r50-timed-cold 90 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --timed-tactics --json "$R/r50-timed-cold.json"
q r50-timed-warm 60 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --timed-tactics --json "$R/r50-timed-warm.json"
q r50-heur2 45 "$CLI" $B --json "$R/r50-heur2.json"
q r50-timed-prof 40 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --timed-tactics --profile --json "$R/r50-timed-prof.json"
CLASSES="AttentionGpuTests MlpGpuTests KernelCaseGpuTests OperatorGpuTests DataDependentGpuTests BranchesGpuTests SmallRowsGpuTests TransferGpuTests PointwiseConvGpuTests SplitKConvGpuTests GroupedConvGpuTests ShapeGpuTests StagedGpuTests OperatorCaseGpuTests TelemetryGpuTests PlanThreadsGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=80 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
