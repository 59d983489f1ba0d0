#!/usr/bin/env bash
# Session 26, call 5 (main at .device/rev, d5316bb: the own persistent int8 1x1 kernel, BATCHWISE_INT8_CONV=pointwise,
# first time on a GPU; the device budget left allows one short call): its GPU tests (agreement with the library routes
# and ONNX Runtime, no local memory), ResNet-50 int8 with it at b=256 with a per-layer profile, fp16 in the same call.
source bench/device/call-lib.sh 225
unpack tests || { pack; exit 1; }
CLASSES="Int8PointwiseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=80 DEADLINE=85 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-opt 25 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-pw 75 $I8 BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-pw.json"
q r50 25 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50.json"
pack
