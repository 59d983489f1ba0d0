#!/usr/bin/env bash
# PREPARED for the next device session (publish.sh of HEAD, stage.sh with carry .device1, then this with carry .device
# within 30 s; CALL_SECONDS=590 and the run tool's timeout 600): issue 16's explain study, all 22 runs in one call. The
# probe now measures the fp32 1x1 and stride-2 tables (session 42: calibration 178 s on an H100, which left 5 runs
# unmeasured when the call also profiled) and the GEMM tables' further N (a few seconds more), so nothing else runs
# before it; BERT fp32 (the one run that failed, its knee) is profiled at b=16 and 32 after it with what is left.
source bench/device/call-lib.sh "${CALL_SECONDS:-590}"
unpack || { pack; exit 1; }
PEERS=${PEERS:-resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016}
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
CLI=$CLI OUT=$R/explain WORLD_EXPORTS=$WORK/exports PEERS=$PEERS BUDGET=$(( $(left) - 25 )) bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -E '^[0-9]+ of [0-9]+ runs' "$R/explain/table.md" 2>/dev/null); probe $(grep -o '"calibration_seconds": [0-9.]*' "$R"/explain/ceilings-cache/vm-cuda-*.json 2>/dev/null)"
rm -rf "$R/explain/cache"
q bert-fp32 20 "$CLI" bench zoo:bert --engine cuda -b 16,32 --duration 200ms --profile --json "$R/bert-fp32.json"
pack
