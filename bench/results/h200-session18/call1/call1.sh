#!/usr/bin/env bash
# Session 18, call 1 (code of .device/rev = 8a52ef7, engine code 0e38f5a/aa2f53a): the depthwise kernel at fixed offsets
# (0e38f5a: channel count as a literal, hoisted pointers, an interior fast path without per-load bounds checks) against
# 114d158's Batchwise.Cuda.dll (flat overlay, same CLI otherwise), alternating: MobileNetV2 fp16 b=1,64,256, MobileNetV2
# int8 b=64,256 (cache warmed first), MobileNetV3-L / EfficientNet-B0 / ConvNeXt-T exports at b=1,64; then the GPU test
# classes that run depthwise layers. Both builds are plain (not ReadyToRun) publishes.
source bench/device/call-lib.sh 560
unpack tests base node || { pack; exit 1; }
EXP=$WORK/exports; MODELS=mobilenetv3_large_100,efficientnet_b0,convnext_tiny
timeout 200 python3 bench/peers/world.py --export-only --cli "$CLI" --out "$R/world" --work "$EXP" --models $MODELS --jobs 3 > "$R/export.txt" 2>&1 &
EXPORTS=$!
for i in 1 2; do
  q m2-new-$i 30 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-new-$i.json"
  q m2-base-$i 30 "$BASE" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-base-$i.json"
done
timeout "$(lim 40)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
I8="BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q m2q-warm 90 env $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 0.3s --warmup 0.1s --max-windows 1
q m2q-base-1 45 env $I8 "$BASE" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-base-1.json"
q m2q-new-1 45 env $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-new-1.json"
q m2q-base-2 45 env $I8 "$BASE" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-base-2.json"
q m2q-new-2 45 env $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-new-2.json"
wait $EXPORTS; t "exports exit $?: $(ls "$EXP" 2>/dev/null | tr '\n' ' ')"
for m in ${MODELS//,/ }; do
  [ -f "$EXP/$m/model.onnx" ] || continue
  q "$m-new" 30 "$CLI" bench "$EXP/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-new.json"
  q "$m-base" 30 "$BASE" bench "$EXP/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-base.json"
done
CLASSES="KernelCaseGpuTests QuantizedModelGpuTests GroupedConvGpuTests ModelGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=$(( $(left) - 90 )) BATCHWISE_ONNX_NODE_TESTS=$NODE bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
