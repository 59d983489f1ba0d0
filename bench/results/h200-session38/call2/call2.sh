#!/usr/bin/env bash
# Session 38, call 2 (prepared in session 36 as next/explain-full.sh, run as it was):
# in full under the 2,048 MB workspace default — every batch 1..256, the zoo and the five peer exports, the ceilings
# measured afresh. Session 36's two thin partial studies passed 8 of 8 zoo runs; a full study last ran in session 24
# (16 of 22). About 450-550 s: the exports first (up to 150 s), then the study in what is left.
source bench/device/call-lib.sh 570
unpack || { pack; exit 1; }
PEERS=resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016
mkdir -p "$R/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
CLI=$CLI OUT=$R/explain WORLD_EXPORTS=$WORK/exports PEERS=$PEERS BUDGET=$(( $(left) - 25 )) bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -E '^[0-9]+ of [0-9]+ runs' "$R/explain/table.md" 2>/dev/null)"
rm -rf "$R/explain/cache"
pack
