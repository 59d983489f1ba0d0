#!/usr/bin/env bash
# Session 26, call 2 (main at .device/rev: the QDQ stem as the fused stem kernel, 067d578): the GPU tests it touches;
# ResNet-50 int8 against fp16 at b=1 and 256 (one process each), compare against ONNX Runtime at b=32; the int8 graph
# configurations' trial times at b=256 with a wider search (BATCHWISE_INT8_TRACE), and MobileNetV2 int8/fp16 profiles.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="StemPoolGpuTests QuantizedModelGpuTests Int8ResidualFusionGpuTests" LIMITS="QuantizedModelGpuTests=150" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=190 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q 90 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50q.json"
q r50 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50.json"
q r50q-cmp 60 $I8 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 32
q r50q-wide 110 $I8 BATCHWISE_INT8_TRACE=1 BATCHWISE_INT8_GRAPH_CONFIGS=32 BATCHWISE_INT8_GRAPH_SECONDS=4 BATCHWISE_CACHE_DIR=$WORK/cache-wide "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-wide.json"
q m2q-opt 30 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx"
q m2q 50 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2q.json"
q m2 25 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2.json"
pack
