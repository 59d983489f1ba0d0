#!/usr/bin/env bash
# Session 25, call 3 (main at .device/rev, 8dc7db7: the own int8 kernel's epilogue rewritten after call 2 measured it at
# 0.55x the library routes, L1-bound with 8 warps an SM): its GPU tests (agreement; registers and local memory of each
# tile); ResNet-50 int8 b=256 per-layer profiles with each tile forced and with the grid's choice, fp16 in the same call;
# the ONNX operator cases cut at 90 s in call 1, with 170 s.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="Int8ConvGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=100 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
grep -h 'int8 conv' "$R/gpu/Int8ConvGpuTests.log" | head -8 >> "$R/log.txt"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
for tile in auto 128x128 128x64 64x64; do
  T=""; [ $tile != auto ] && T="BATCHWISE_INT8_CONV_TILE=$tile"
  q r50q-$tile 45 $I8 $T "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-$tile.json"
done
q r50-256 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/r50-256.json"
CLASSES="OperatorCaseGpuTests" TESTS=$TESTS OUT=$R/gpu2 LIMIT=170 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests2.txt" 2>&1
cat "$R/gpu2/summary.txt" >> "$R/log.txt"
pack
