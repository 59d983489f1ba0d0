#!/usr/bin/env bash
# Session 27, call 2 (main at .device/rev, af4f7d8: the own int8 kernels' requantization in half the instructions):
# their GPU tests (agreement with ONNX Runtime and the library routes), then ResNet-50 int8 at b=256 with the pointwise
# kernel (per layer), the library routes and fp16 in the same call.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="Int8PointwiseGpuTests Int8ConvGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=180 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-pw 60 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-pw.json"
q r50q-pw-1-256 50 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50q-pw-1-256.json"
q r50q 40 env BATCHWISE_INT8=on "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50q.json"
q r50 25 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50.json"
q r50q-pw-cmp 45 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda -b 32
pack
