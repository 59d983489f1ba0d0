#!/usr/bin/env bash
# PREPARED, NOT RUN (next session; publish of the final commit): the activation after a depthwise layer inside its kernel
# (aa21c51: default on; BATCHWISE_DEPTHWISE_ACTIVATION=off is the old plan, a pass a block before the 1x1 after it),
# alternating, on MobileNetV2 fp16 (zoo) and MobileNetV3-L fp16 (timm export) at b=1, 64 and 256, fp32 MobileNetV2 once;
# then KernelCaseGpuTests and OperatorCaseGpuTests (the hard-swish depthwise case, every generated kernel).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
timeout 120 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models mobilenetv3_large_100 --jobs 1 > "$R/exports.log" 2>&1
M3=$WORK/exports/mobilenetv3_large_100/model.onnx
ab() { q "$1" 60 "${@:3}" "$CLI" bench "$2" --engine cuda --precision fp16 -b 1,64,256 --duration 400ms --json "$R/$1.json"; }
for i in 1 2; do
  ab m2-on-$i zoo:mobilenetv2; ab m2-off-$i zoo:mobilenetv2 env BATCHWISE_DEPTHWISE_ACTIVATION=off
  [ -f "$M3" ] && { ab m3-on-$i "$M3"; ab m3-off-$i "$M3" env BATCHWISE_DEPTHWISE_ACTIVATION=off; }
done
q m2-fp32-on 60 "$CLI" bench zoo:mobilenetv2 --engine cuda -b 1,64,256 --duration 400ms --json "$R/m2-fp32-on.json"
q m2-fp32-off 60 env BATCHWISE_DEPTHWISE_ACTIVATION=off "$CLI" bench zoo:mobilenetv2 --engine cuda -b 1,64,256 --duration 400ms --json "$R/m2-fp32-off.json"
q m2-cmp 60 "$CLI" compare zoo:mobilenetv2 --engines ort,cuda --precision fp16 -b 64 --rtol 0.05 --atol 0.05
CLASSES="KernelCaseGpuTests OperatorCaseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
