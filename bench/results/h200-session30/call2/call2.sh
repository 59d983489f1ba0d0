#!/usr/bin/env bash
# Session 30, call 2 (main at .device/rev): session 29's unmeasured int8 work on the current engine, no base needed.
# - GPU classes: Int8SiluFusion, Int8GemmGraph, QuantizedModel, Int8ResidualFusion, Int8NarrowPointwise.
# - BERT int8 (zoo, seq 128) at b=32 and 128: cuBLASLt's route (default) and BATCHWISE_INT8_GEMM=graph, against fp16;
#   compare of the graph route against ORT.
# - YOLOv8n int8 (640) at b=64: SiLU fused (default) and apart, symmetric activations, against fp16.
# - MobileNetV2 int8 at b=256 (session 28's depthwise kernel, now the default) and with the narrow 1x1 kernel, fp16.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
CLASSES="Int8SiluFusionGpuTests Int8GemmGraphGpuTests QuantizedModelGpuTests Int8ResidualFusionGpuTests Int8NarrowPointwiseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=150 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on"
q bertq-opt 40 "$CLI" optimize zoo:bert --int8 --calibration random:2 --no-verify -o "$WORK/bertq.onnx"
q bertq 45 $I8 "$CLI" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bertq.json"
q bertq-graph 60 $I8 BATCHWISE_INT8_GEMM=graph BATCHWISE_INT8_TRACE=1 "$CLI" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bertq-graph.json"
q bert 30 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bert.json"
q bertq-graph-cmp 40 $I8 BATCHWISE_INT8_GEMM=graph "$CLI" compare "$WORK/bertq.onnx" --engines ort,cuda --precision fp16 -b 4
q y8q-opt 40 "$CLI" optimize zoo:yolov8n --int8 --calibration random:2 --no-verify -o "$WORK/y8q.onnx"
q y8q 45 $I8 "$CLI" bench "$WORK/y8q.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8q.json"
q y8q-silu-off 45 $I8 BATCHWISE_INT8_SILU=off "$CLI" bench "$WORK/y8q.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8q-silu-off.json"
q y8 25 "$CLI" bench zoo:yolov8n --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8.json"
q y8qs-opt 40 "$CLI" optimize zoo:yolov8n --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$WORK/y8qs.onnx"
q y8qs 45 $I8 "$CLI" bench "$WORK/y8qs.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8qs.json"
q m2q-opt 30 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q 30 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q.json"
q m2q-narrow 30 $I8 BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-narrow.json"
q m2 25 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2.json"
pack
