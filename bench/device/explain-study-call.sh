#!/usr/bin/env bash
# A device call (`run` with carry [".device"], after publish.sh and stage.sh): issue 16's explain study in full — the five
# peer exports (up to 150 s), then bench/explain-gpu.sh (ceilings measured afresh, zoo + peers, every batch 1..256) in
# what is left; the ceilings cache is kept in r/explain/ceilings-cache for replays off the device
# (bench/explain-replay.sh). About 350-550 s on an H100 (session 38: 354 s; session 42's probe, with the fp32 1x1 and
# stride-2 tables, 178 s of it: give it CALL_SECONDS=590 and the run tool's timeout 600).
source bench/device/call-lib.sh "${CALL_SECONDS:-570}"
unpack || { pack; exit 1; }
PEERS=${PEERS:-resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016}
mkdir -p "$R/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
CLI=$CLI OUT=$R/explain WORLD_EXPORTS=$WORK/exports PEERS=$PEERS BUDGET=$(( $(left) - 25 )) bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -E '^[0-9]+ of [0-9]+ runs' "$R/explain/table.md" 2>/dev/null)"
# The measured ceilings stay on the machine for later calls while it is warm (BATCHWISE_CACHE_DIR=$WORK/study-cache).
rm -rf "$WORK/study-cache" && mv "$R/explain/cache" "$WORK/study-cache"
pack
