#!/usr/bin/env bash
# Session 26, call 4 (main at .device/rev, 498538e, the session's final engine code): Int8ModelGpuTests (ResNet-50 QDQ
# through every int8 route, now with the fused QDQ stem), the ONNX node cases (cut at their limit in call 1), and the
# ResNet-50 int8 per-layer profile at b=256 (call 3's was cut at 60 s by the plan's search).
source bench/device/call-lib.sh 500
unpack tests node || { pack; exit 1; }
CLASSES="Int8ModelGpuTests NodeGpuTests" LIMITS="Int8ModelGpuTests=200" \
  BATCHWISE_ONNX_NODE_TESTS=$NODE TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=330 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-256 130 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-256.json"
pack
