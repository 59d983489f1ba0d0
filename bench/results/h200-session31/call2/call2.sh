#!/usr/bin/env bash
# Session 31, call 2 (main at .device/rev, 41b3979): the int8 depthwise kernel, the folded ReLU6 and the narrow 1x1
# kernel by default. MobileNetV2 int8 against fp16 at b=64 and 256 and compare against ORT; YOLOv8n int8 (the narrow
# kernel's default reaches its expansions) against fp16; MobileNetV2 with symmetric activations; its layers at b=256;
# the NVRTC compile of the new kernel. In order of need: what the call's time cuts is last.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
I8="env BATCHWISE_INT8=on"
q m2q-opt 30 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q 110 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q.json"
q m2 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2.json"
q m2q-cmp 40 $I8 "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 32
q y8q-opt 30 "$CLI" optimize zoo:yolov8n --int8 --calibration random:2 --no-verify -o "$WORK/y8q.onnx"
q y8q 70 $I8 "$CLI" bench "$WORK/y8q.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8q.json"
q y8 25 "$CLI" bench zoo:yolov8n --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8.json"
q kc 30 env BATCHWISE_REQUIRE_GPU=1 "$TESTS" -parallelMode none -class "*.KernelCompileTests" -noColor
q m2qs-opt 30 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$WORK/m2qs.onnx"
q m2qs 90 $I8 "$CLI" bench "$WORK/m2qs.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2qs.json"
q m2qs-cmp 40 $I8 "$CLI" compare "$WORK/m2qs.onnx" --engines ort,cuda --precision fp16 -b 32
q m2q-prof 50 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/m2q-prof.json"
pack
