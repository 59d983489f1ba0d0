#!/usr/bin/env bash
# Session 27, call 4 (main at .device/rev, dffca8b: the own 1x1 kernel by default for expanding int8 1x1s, the QDQ
# stem's rounding in float adds): the GPU tests the defaults touch, ResNet-50 int8 with the defaults at b=256 per layer
# and at b=1 and 256, fp16 at b=1 and 256 in the same call, and the int8 model against the fp32 model over 1,000
# seeded inputs (both on the GPU, fp32 the reference).
source bench/device/call-lib.sh 540
unpack tests || { pack; exit 1; }
CLASSES="StemPoolGpuTests QuantizedModelGpuTests Int8PrecisionGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=170 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-prof 60 env BATCHWISE_INT8=on "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-prof.json"
q r50q-1-256 50 env BATCHWISE_INT8=on "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50q-1-256.json"
q r50-1-256 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50-1-256.json"
q r50q-vs-fp32-1000 120 env BATCHWISE_INT8=on "$CLI" compare zoo:resnet50 "$WORK/r50q.onnx" --engines cuda,cuda --precision fp16 -b 1000
pack
