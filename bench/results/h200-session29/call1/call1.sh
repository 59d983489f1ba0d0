#!/usr/bin/env bash
# Session 29, call 1 — PREPARED, NOT RUN (no device machine was lent in session 29). For the next session, on a publish
# of main (.device/rev, `bash bench/device/publish.sh`) with 7a49fe6's Batchwise.Cuda.dll as the base
# (`bash bench/device/publish.sh --overlay 7a49fe6 cli-base.tar.xz`): session 29's int8 transformer and SiLU work.
# - GPU classes: the SiLU in the int8 convolution's step (cuDNN's swish graph; the own epilogue), int8 products on
#   cuDNN's graph (bias, residual, GELU + QuantizeLinear), KernelCompile (the new kernel texts), QuantizedModel and
#   Int8ResidualFusion (regressions of the int8 convolution path).
# - BERT int8 (zoo, 12 layers, seq 128) at b=32 and 128: cuBLASLt's route (now with the LayerNorm and attention writing
#   int8), BATCHWISE_INT8_GEMM=graph, fp16, and 7a49fe6's engine on the same QDQ model; a per-layer profile of the graph
#   route at b=128; compare against ORT.
# - YOLOv8n int8 (640) at b=64: the SiLU fused (default) and apart (BATCHWISE_INT8_SILU=off), and fp16.
source bench/device/call-lib.sh 545
unpack tests base || { pack; exit 1; }
CLASSES="Int8SiluFusionGpuTests Int8GemmGraphGpuTests KernelCompileTests QuantizedModelGpuTests Int8ResidualFusionGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=200 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on"
q bertq-opt 40 "$CLI" optimize zoo:bert --int8 --calibration random:2 -o "$WORK/bertq.onnx"
q bertq-graph 60 $I8 BATCHWISE_INT8_GEMM=graph BATCHWISE_INT8_TRACE=1 "$CLI" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bertq-graph.json"
q bertq 50 $I8 "$CLI" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bertq.json"
q bert 30 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bert.json"
q bertq-base 50 $I8 "$BASE" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 32,128 --duration 300ms --json "$R/bertq-base.json"
q bertq-graph-prof 50 $I8 BATCHWISE_INT8_GEMM=graph "$CLI" bench "$WORK/bertq.onnx" --engine cuda --precision fp16 -b 128 --profile --duration 300ms --json "$R/bertq-graph-prof.json"
q bertq-cmp 45 $I8 BATCHWISE_INT8_GEMM=graph "$CLI" compare "$WORK/bertq.onnx" --engines ort,cuda --precision fp16 -b 4
q y8q-opt 40 "$CLI" optimize zoo:yolov8n --int8 --calibration random:2 -o "$WORK/y8q.onnx"
q y8q 50 $I8 "$CLI" bench "$WORK/y8q.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8q.json"
q y8q-silu-off 50 $I8 BATCHWISE_INT8_SILU=off "$CLI" bench "$WORK/y8q.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8q-silu-off.json"
q y8 25 "$CLI" bench zoo:yolov8n --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8.json"
pack
