#!/usr/bin/env bash
# Session 27, call 1 (main at .device/rev, f85dae8: session 26's final code): the GPU tests not run on it (the QDQ stem's
# spill check after the QdqRounding refactor, the pointwise kernel's 2-4 stage compile check, the int8 defaults through
# Int8Precision), then ResNet-50 int8 at b=256 with the pointwise kernel at 2, 3 and 4 tiles in flight (per layer), the
# library routes (the default) and fp16 in the same call.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="StemPoolGpuTests Int8PointwiseGpuTests Int8PrecisionGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=190 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
for s in 4 3 2; do
  q r50q-pw$s 75 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise BATCHWISE_INT8_POINTWISE_STAGES=$s "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-pw$s.json"
done
q r50q 30 env BATCHWISE_INT8=on "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50q.json"
q r50 25 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50.json"
pack
