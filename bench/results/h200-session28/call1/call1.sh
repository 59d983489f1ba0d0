#!/usr/bin/env bash
# Session 28, call 1 (main at .device/rev, 8867d82: session 27's review, not run on a GPU): the int8 GPU classes its
# kernels touch, and MobileNetV2 per layer at b=256, int8 against fp16 (where the int8 model loses to fp16).
source bench/device/call-lib.sh 540
unpack tests || { pack; exit 1; }
CLASSES="StemPoolGpuTests Int8ConvGpuTests Int8PointwiseGpuTests QuantizedModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=260 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q m2q-opt 25 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx"
q m2q-prof 60 env BATCHWISE_INT8=on "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2q-prof.json"
q m2-prof 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2-prof.json"
ls "$R"/*.layers.csv >> "$R/log.txt" 2>&1
pack
