#!/usr/bin/env bash
# Session 24, call 5 (main at .device/rev: the final engine and probe code): GPU classes on the final code (the stem's,
# ModelGpuTests and the planner classes it touches); ResNet-50 fp16 b=1/8/64/256; explain's GPU error study again (the
# cuDNN rate tables now time every allowed algorithm, as the engine's timed tactics do); last, if time is left, ViT-S
# b=1 with a cold timing cache, the same warm, and cold with the JIT's tiering off (why a first bench after a cold
# build measured b=1 7-15% slower in sessions 23-24).
source bench/device/call-lib.sh 520
unpack tests || { pack; exit 1; }
PEERS=resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016
mkdir -p "$R/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="StemPoolGpuTests StemConvGpuTests ModelGpuTests PointwiseConvGpuTests ShapeGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=50 DEADLINE=100 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
grep -h "registers" "$R/gpu/StemPoolGpuTests.log" | head -2 >> "$R/log.txt"
q r50 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/r50.json"
wait $exports
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
CLI=$CLI OUT=$R/explain WORLD_EXPORTS=$WORK/exports PEERS=$PEERS BUDGET=$(( $(left) - 80 )) timeout "$(lim 330)" bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -E '^[0-9]+ of [0-9]+ runs' "$R/explain/table.md" 2>/dev/null)"
rm -rf "$R/explain/cache"
V=$WORK/exports/vit_small_patch16_224/model.onnx
P="--engine cuda --precision fp16 -b 1 --duration 0.4s --warmup 0.3s --max-windows 3"
if [ -f "$V" ] && [ "$(left)" -gt 60 ]; then
  q vit-cold 25 env BATCHWISE_CACHE_DIR=$WORK/c1 "$CLI" bench "$V" $P
  q vit-warm 15 env BATCHWISE_CACHE_DIR=$WORK/c1 "$CLI" bench "$V" $P
  q vit-cold-notiering 25 env BATCHWISE_CACHE_DIR=$WORK/c2 DOTNET_TieredCompilation=0 "$CLI" bench "$V" $P
fi
pack
