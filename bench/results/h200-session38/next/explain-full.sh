#!/usr/bin/env bash
# PREPARED, NOT RUN (next session; publish of the final commit): issue 16's explain study in full again, out of sample for session 38's cost-model change (01860bf: one graph node past a table-priced layer, cuBLASLt products padded to 64-tiles; replayed in-sample 15 -> 19 of 22). Then replay it against the earlier model: `CLI=... STUDY=OUT/explain OUT=/tmp/r bash bench/explain-replay.sh` (peer models: call4/zeroed).
# (as session 36's next/explain-full.sh:)
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
