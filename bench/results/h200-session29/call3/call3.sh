#!/usr/bin/env bash
# Session 29, call 3 — PREPARED, NOT RUN (no device machine was lent in session 29). On a publish of main: symmetric
# int8 activations (`optimize --int8-activations symmetric`: zero point 128, no padded copies before the int8 3x3
# convolutions) against the asymmetric default and fp16, ResNet-50 at b=1 and 256 and YOLOv8n at b=64, one process each;
# compare against ORT for the symmetric ResNet-50.
source bench/device/call-lib.sh 545
unpack || { pack; exit 1; }
I8="env BATCHWISE_INT8=on"
q r50q-opt 60 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50qs-opt 60 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric -o "$WORK/r50qs.onnx"
q r50qs 90 $I8 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50qs.json"
q r50q 90 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50q.json"
q r50 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50.json"
q r50qs-prof 60 $I8 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50qs-prof.json"
q r50qs-cmp 45 $I8 "$CLI" compare "$WORK/r50qs.onnx" --engines ort,cuda --precision fp16 -b 32
q y8qs-opt 40 "$CLI" optimize zoo:yolov8n --int8 --calibration random:2 --int8-activations symmetric -o "$WORK/y8qs.onnx"
q y8qs 50 $I8 "$CLI" bench "$WORK/y8qs.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --json "$R/y8qs.json"
pack
