#!/usr/bin/env bash
# Session 27, call 3 (main at .device/rev, 078982f: the int8 epilogues without int-to-float conversions): the own int8
# kernels' GPU tests, ResNet-50 int8 with the pointwise kernel at b=256 per layer and at b=1 and 256, fp16 at b=1 and
# 256 in the same call, compare against ONNX Runtime.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="Int8PointwiseGpuTests Int8ConvGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=180 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8PW="env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=pointwise"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q-pw 75 $I8PW "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-pw.json"
q r50q-pw-1-256 70 $I8PW "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50q-pw-1-256.json"
q r50-1-256 45 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50-1-256.json"
q r50q-pw-cmp 45 $I8PW "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda -b 32
pack
