#!/usr/bin/env bash
# Session 31, call 4 — PREPARED, NOT RUN (the session's device time was spent). On a publish of main after a15c1ff
# (elementwise QuantizeLinear by the reciprocal, bw_quantize; the graph-route residual guard 51fe8fb): MobileNetV2 int8
# at b=64 and 256 against fp16 (its stem output chain was 0.28 ms in call 2), compare against ORT, its layers at b=256;
# EfficientNet-B0 int8 (its 3x3 and 5x5 depthwise layers with the SiLU on the int8 depthwise kernel, never run on a
# GPU) against fp16 and ORT; then the GPU classes that run QuantizeLinear chains and the int8 layers.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
I8="env BATCHWISE_INT8=on"
q m2q-opt 20 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q 100 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q.json"
q m2 30 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2.json"
q m2q-cmp 30 $I8 "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 32
q m2q-prof 40 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/m2q-prof.json"
timeout 90 python3 bench/peers/world.py --export-only --models efficientnet_b0 --work "$WORK/exports" --out "$R/exports" --jobs 1 > "$R/exports.log" 2>&1
E0=$(ls "$WORK"/exports/efficientnet_b0/model.onnx 2>/dev/null); t "efficientnet_b0 export: ${E0:-none}"
q e0q-opt 30 "$CLI" optimize "$E0" --int8 --calibration random:2 --no-verify -o "$WORK/e0q.onnx"
q e0q-cmp 60 $I8 "$CLI" compare "$WORK/e0q.onnx" --engines ort,cuda --precision fp16 -b 8
q e0q 80 $I8 "$CLI" bench "$WORK/e0q.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/e0q.json"
CLASSES="KernelCompileTests QuantizedModelGpuTests Int8ResidualFusionGpuTests OperatorCaseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 12 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
