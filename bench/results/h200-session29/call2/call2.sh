#!/usr/bin/env bash
# Session 29, call 2 — PREPARED, NOT RUN: session 28's call 2 (never run: its device stopped answering, and none was
# lent in session 29) as it was written, on a publish of main (.device/rev) with 8867d82's
# Batchwise.Cuda.dll as the base (`bash bench/device/publish.sh --overlay 8867d82 cli-base.tar.xz`):
# the int8 depthwise kernel's tables a copy per lane, two output rows a thread, the output's QuantizeLinear by the
# reciprocal, threads a grid apart (2d89b25, the int8 default); the own narrow dp4a kernel for expansions from 8-64
# channels (b7020ef, opt-in: BATCHWISE_INT8_CONV=pointwise); BATCHWISE_DEPTHWISE_ROWS for every depthwise kernel
# (74eefed). GPU classes over depthwise layers, the narrow kernel and the QDQ MobileNetV2, NVRTC compiles of every generator (KernelCompileTests, with the int8 depthwise kernel); MobileNetV2 int8 per layer
# (pointwise choice), with the defaults, the pointwise choice and 8867d82's engine, 1 and 4 rows; fp16 with both engines
# (the float depthwise kernel's row loop is unrolled by the generator now: the same arithmetic) and with two rows a
# thread; ORT against cuda (YOLOv8n moved to call 1).
source bench/device/call-lib.sh 545
unpack tests base || { pack; exit 1; }
CLASSES="Int8NarrowPointwiseGpuTests KernelCompileTests KernelCaseGpuTests QuantizedModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=200 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q m2q-opt 25 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx"
q m2q-prof 60 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2q-prof.json"
q m2q-pw 40 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q-pw.json"
q m2q 40 env BATCHWISE_INT8=on "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q.json"
q m2q-base 40 env BATCHWISE_INT8=on "$BASE" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q-base.json"
q m2 30 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --duration 300ms --json "$R/m2.json"
q m2-base 30 "$BASE" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --duration 300ms --json "$R/m2-base.json"
q m2q-cmp 45 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 32
q m2q-rows1 40 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise BATCHWISE_DEPTHWISE_ROWS=1 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q-rows1.json"
q m2-rows2 30 env BATCHWISE_DEPTHWISE_ROWS=2 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --duration 300ms --json "$R/m2-rows2.json"
q m2q-rows4 40 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise BATCHWISE_DEPTHWISE_ROWS=4 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q-rows4.json"
pack
