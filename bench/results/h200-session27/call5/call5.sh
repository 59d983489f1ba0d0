#!/usr/bin/env bash
# Session 27, call 5 (main at .device/rev, dffca8b, the session's final engine code; the device budget's last ~360 s):
# Int8PrecisionGpuTests (cut by call 4's deadline), ResNet-50 int8 with the defaults at b=1 and 256 and fp16 in the same
# call (call 4's b=256 point was cut by its time limit after a 37 s b=1 plan search), MobileNetV2 int8 against fp16 at
# b=256 (its 64 -> 384 expansions now take the own 1x1 kernel).
source bench/device/call-lib.sh 325
unpack tests || { pack; exit 1; }
CLASSES="Int8PrecisionGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=105 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-1-256 80 env BATCHWISE_INT8=on "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50q-1-256.json"
q r50-1-256 35 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50-1-256.json"
q m2q-opt 25 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx"
q m2q 45 env BATCHWISE_INT8=on "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q.json"
q m2 20 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2.json"
pack
