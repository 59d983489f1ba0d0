#!/usr/bin/env bash
# Session 22, call 6 (main at .device/rev: a split reduction's finishing pass as a warp per output): EfficientNet-B0 fp16
# at b=1..16 (call 1 on 741ef34: 1,954 / 3,570 / 6,331 / 10,634 / 16,114) with a b=4 profile, KernelCaseGpuTests (the
# reduction cases) and ShapeGpuTests.
source bench/device/call-lib.sh 200
unpack tests || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 120 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models efficientnet_b0 --jobs 1 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="KernelCaseGpuTests ShapeGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=50 DEADLINE=80 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports
E="$WORK/exports/efficientnet_b0/model.onnx"
q effnet16 40 "$CLI" bench "$E" --engine cuda --precision fp16 -b 1,2,4,8,16 --json "$R/effnet16.json"
q prof-effnet16-b4 20 "$CLI" bench "$E" --engine cuda --precision fp16 -b 4 --profile --json "$R/prof-effnet16-b4.json"
pack
