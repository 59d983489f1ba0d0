#!/usr/bin/env bash
# Session 18, call 3 (code of .device/rev = 334699b): the depthwise interior path as a kernel argument, on for layers of
# 2^18 threads and more (auto), against the same build with it on everywhere (= 0e38f5a's kernel, BATCHWISE_DEPTHWISE_
# INTERIOR=on) and 114d158's Batchwise.Cuda.dll (flat overlay: the kernel before the fixed offsets), alternating:
# MobileNetV2 fp16 b=1,64,256, MobileNetV3-L / EfficientNet-B0 / ConvNeXt-T exports b=1,64. Then the GPU test classes
# from this commit, those that run depthwise layers and plan profiles first, as many as the 568 s of device time left
# allow (a refused start cost 120 s; call 2 ran all 21 from 8a52ef7), while the exports finish; then the exports.
source bench/device/call-lib.sh 410
unpack tests base node || { pack; exit 1; }
EXP=$WORK/exports; MODELS=mobilenetv3_large_100,efficientnet_b0,convnext_tiny
timeout 200 python3 bench/peers/world.py --export-only --cli "$CLI" --out "$R/world" --work "$EXP" --models $MODELS --jobs 3 > "$R/export.txt" 2>&1 &
EXPORTS=$!
q m2-auto-1 25 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-auto-1.json"
q m2-on-1 25 env BATCHWISE_DEPTHWISE_INTERIOR=on "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-on-1.json"
q m2-base114-1 25 "$BASE" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-base114-1.json"
q m2-auto-2 25 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-auto-2.json"
CLASSES="KernelCaseGpuTests ShapeGpuTests CeilingsGpuTests GroupedConvGpuTests ModelGpuTests NodeGpuTests QuantizedModelGpuTests OperatorCaseGpuTests PointwiseConvGpuTests BranchesGpuTests AttentionGpuTests MlpGpuTests StagedGpuTests PipelinedStagedGpuTests TransferGpuTests SmallRowsGpuTests DataDependentGpuTests KernelCompileTests TelemetryGpuTests PlanThreadsGpuTests OperatorGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 60 )) BATCHWISE_ONNX_NODE_TESTS=$NODE bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $EXPORTS; t "exports exit $?: $(ls "$EXP" 2>/dev/null | tr '\n' ' ')"
for m in ${MODELS//,/ }; do
  [ -f "$EXP/$m/model.onnx" ] || continue
  q "$m-auto" 25 "$CLI" bench "$EXP/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-auto.json"
  q "$m-base114" 25 "$BASE" bench "$EXP/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-base114.json"
done
pack
