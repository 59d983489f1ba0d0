#!/usr/bin/env bash
# Session 31, call 1 (main at .device/rev, 34a1129: session 30's final engine): the GPU classes session 30's calls cut
# at their deadlines, then MobileNetV2 int8 against fp16 at b=256 layer by layer (where int8 loses) and with the narrow
# 1x1 kernel (BATCHWISE_INT8_CONV=pointwise, never measured).
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
I8="env BATCHWISE_INT8=on"
q m2q-opt 30 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q-prof 110 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2q-prof.json"
q m2-prof 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2-prof.json"
q m2q-narrow 90 $I8 BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-narrow.json"
CLASSES="Int8NarrowPointwiseGpuTests Int8ResidualFusionGpuTests Int8PrecisionGpuTests QuantizedModelGpuTests ModelGpuTests OperatorCaseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
