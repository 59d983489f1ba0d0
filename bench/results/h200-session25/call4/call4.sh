#!/usr/bin/env bash
# Session 25, call 4 (main at .device/rev, f851fac: the own int8 kernel opt-in, cuDNN's routes the default again): the
# int8 GPU tests from the final engine code; ResNet-50 and MobileNetV2 int8 (QDQ from optimize --int8) against fp16 in
# one call; the cold-build b=1 slowdown with every module loaded at start (CUDA_MODULE_LOADING=EAGER).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="Int8ConvGpuTests Int8ResidualFusionGpuTests QuantizedModelGpuTests" LIMITS="QuantizedModelGpuTests=150" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=250 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q 90 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50q.json"
q r50 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50.json"
q m2q-opt 30 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx"
q m2q 60 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 400ms --json "$R/m2q.json"
q m2 30 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64,256 --duration 400ms --json "$R/m2.json"
CLI=$CLI MODEL=zoo:bert OUT=$R/cold B=1 VARIANTS="eager" timeout "$(lim 50)" bash bench/device/cold-build.sh > "$R/cold.txt" 2>&1
cat "$R/cold/summary.txt" >> "$R/log.txt"
pack
