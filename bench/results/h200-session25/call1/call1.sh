#!/usr/bin/env bash
# Session 25, call 1 (main at .device/rev, 0007e22: session 24's final engine code, not yet run on a GPU): the GPU classes
# the stem and planner changes touch plus the ONNX node cases; ResNet-50 int8 (QDQ from optimize --int8) and fp16 per-layer
# profiles at b=256 from this commit (the int8 target's starting point); the cold-build b=1 slowdown on zoo:bert.
source bench/device/call-lib.sh 560
unpack tests node || { pack; exit 1; }
CLASSES="StemPoolGpuTests StemConvGpuTests ModelGpuTests MlpGpuTests ShapeGpuTests PlanThreadsGpuTests PointwiseConvGpuTests SplitKConvGpuTests OperatorCaseGpuTests NodeGpuTests" \
  BATCHWISE_ONNX_NODE_TESTS=$NODE TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=230 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-256 100 env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 400ms --json "$R/r50q-256.json"
q r50-256 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --profile --duration 400ms --json "$R/r50-256.json"
CLI=$CLI MODEL=zoo:bert OUT=$R/cold B=1 VARIANTS="plain connections32 heuristic" timeout "$(lim 120)" bash bench/device/cold-build.sh > "$R/cold.txt" 2>&1
cat "$R/cold/summary.txt" >> "$R/log.txt"
pack
