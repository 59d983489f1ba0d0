#!/usr/bin/env bash
# PREPARED for the next device session (after publish.sh of HEAD and stage.sh; carry .device): issue 16's explain study on
# the fp32 convolution side tables (a9ae0f6 on), then per-layer truth for the fp32 rows it may still miss, in one call:
# the study (exports, ceilings measured afresh — the side tables add an estimated 30-60 s to the probe — and every run at
# b=1..256) within ~430 s, then bench --profile of ResNet-50 fp32 at b=64/256, ResNet-18 fp32 at b=16, ResNeXt-50 fp32 at
# b=128 and BERT fp32 at b=16/64 in what is left. Off the device: bench/explain-replay.sh on r/explain, and
#   batchwise explain MODEL --engine cuda --ceilings-file r/explain/ceilings-cache/vm-cuda-*.json --no-measure -b B --json P.json
#   bench/explain-layers.py r/NAME.json P.json B
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack || { pack; exit 1; }
PEERS=${PEERS:-resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016}
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
CLI=$CLI OUT=$R/explain WORLD_EXPORTS=$WORK/exports PEERS=$PEERS BUDGET=$(( $(left) - 150 )) bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -E '^[0-9]+ of [0-9]+ runs' "$R/explain/table.md" 2>/dev/null); probe $(grep -o '"calibration_seconds": [0-9.]*' "$R"/explain/ceilings-cache/vm-cuda-*.json 2>/dev/null)"
rm -rf "$R/explain/cache"
q resnet50-fp32 50 "$CLI" bench zoo:resnet50 --engine cuda -b 64,256 --duration 200ms --profile --json "$R/resnet50-fp32.json"
q resnet18-fp32 20 "$CLI" bench zoo:resnet18 --engine cuda -b 16 --duration 200ms --profile --json "$R/resnet18-fp32.json"
q resnext-fp32 35 "$CLI" bench "$WORK/exports/resnext50_32x4d/model.onnx" --engine cuda -b 128 --duration 200ms --profile --json "$R/resnext-fp32.json"
q bert-fp32 30 "$CLI" bench zoo:bert --engine cuda -b 16,64 --duration 200ms --profile --json "$R/bert-fp32.json"
pack
