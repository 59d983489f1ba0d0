#!/usr/bin/env bash
# Session 26, call 1 (main at .device/rev, 474f26c: session 25's final code, its review commits not yet run on a GPU):
# the GPU classes not run since the final commits plus the ONNX node cases; ResNet-50 int8 per-layer profiles that
# measure cuBLASLt's int8 1x1 route (BATCHWISE_INT8_GRAPH=off sends every 1x1 there) against the default graph route,
# and the int8 b=1 profile against fp16's.
source bench/device/call-lib.sh 560
unpack tests node || { pack; exit 1; }
CLASSES="Int8ConvGpuTests Int8LayerGpuTests KernelCaseGpuTests AttentionGpuTests BranchesGpuTests Int8PrecisionGpuTests NodeGpuTests" \
  BATCHWISE_ONNX_NODE_TESTS=$NODE TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=220 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-lt-256 100 $I8 BATCHWISE_INT8_GRAPH=off "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-lt-256.json"
q r50q-1 80 $I8 BATCHWISE_INT8_GRAPH=on "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1 --profile --duration 300ms --json "$R/r50q-1.json"
q r50-1 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --profile --duration 300ms --json "$R/r50-1.json"
pack
