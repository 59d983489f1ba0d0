#!/usr/bin/env bash
# Session 22, call 1 (main at .device/rev, 741ef34: session 21's last engine, the finishing pass unrolled by 8 unmeasured):
# ResNet-50 fp16 at b=256 layer by layer (where the 6.45 ms go) and with timed tactics, EfficientNet-B0 fp16 at b=1..16
# with a b=4 profile (the unrolled finishing pass), then the explain error study at every batch 1..256 (schema 7 tables).
source bench/device/call-lib.sh 570
unpack || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016 --jobs 5 > "$R/exports.log" 2>&1 &
exports=$!
B="bench zoo:resnet50 --engine cuda --precision fp16"
q r50-prof256 40 "$CLI" $B -b 256 --profile --json "$R/r50-prof256.json"
q r50-prof64 30 "$CLI" $B -b 64 --profile --json "$R/r50-prof64.json"
q r50-timed 90 "$CLI" $B -b 64,256 --timed-tactics --json "$R/r50-timed.json"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
E="$WORK/exports/efficientnet_b0/model.onnx"
q effnet16 40 "$CLI" bench "$E" --engine cuda --precision fp16 -b 1,2,4,8,16 --json "$R/effnet16.json"
q prof-effnet16-b4 20 "$CLI" bench "$E" --engine cuda --precision fp16 -b 4 --profile --json "$R/prof-effnet16-b4.json"
CLI=$CLI OUT=$R/explain-study WORLD_EXPORTS=$WORK/exports BUDGET=$(( $(left) - 25 )) bash bench/explain-gpu.sh > "$R/explain-study.log" 2>&1
t "explain study exit $? $(tail -1 "$R/explain-study/table.md")"
pack
