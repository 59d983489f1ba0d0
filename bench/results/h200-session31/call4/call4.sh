#!/usr/bin/env bash
# Session 31, call 4 (main at .device/rev, a15c1ff: elementwise QuantizeLinear by the reciprocal): MobileNetV2 int8 at
# b=64 and 256 (its stem output chain, 0.28 ms in call 2) and compare against ORT. The session's last device seconds.
source bench/device/call-lib.sh 200
unpack || { pack; exit 1; }
I8="env BATCHWISE_INT8=on"
q m2q-opt 20 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q 90 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --duration 300ms --json "$R/m2q.json"
q m2q-cmp 30 $I8 "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 32
q m2q-prof 40 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/m2q-prof.json"
pack
