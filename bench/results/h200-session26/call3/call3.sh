#!/usr/bin/env bash
# Session 26, call 3 (main at .device/rev: the QDQ stem kernel's roundings by the reciprocal, 498538e): StemPoolGpuTests
# (both stems' spill checks) and QuantizedModelGpuTests; ResNet-50 int8 per-layer profile at b=256 (the stem kernel's
# time against call 2's 0.686 ms) and int8 against fp16 at b=1 and 256, one process each; compare at b=32; BERT int8.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="StemPoolGpuTests QuantizedModelGpuTests" LIMITS="QuantizedModelGpuTests=150" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=130 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-256 60 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-256.json"
q r50q 90 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50q.json"
q r50 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50.json"
q r50q-cmp 50 $I8 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 32
q bertq-opt 40 "$CLI" optimize zoo:bert --int8 --calibration random:2 -o "$WORK/bertq.onnx"
q bertq 60 $I8 "$CLI" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bertq.json"
q bert 30 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bert.json"
pack
