#!/usr/bin/env bash
# Session 25, call 5 (main at .device/rev, b659963: int8 graph choices reused only within a factor of 4 of the batch):
# ResNet-50 int8 `-b 1,256` in one process, where call 4's b=256 took b=1's choices untimed (39,213 img/s) and call 1's
# `-b 256` alone searched (45,333); fp16 in the same call.
source bench/device/call-lib.sh 240
unpack || { pack; exit 1; }
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
q r50q 130 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50q.json"
q r50 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,256 --duration 400ms --json "$R/r50.json"
pack
