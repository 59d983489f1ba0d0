#!/usr/bin/env bash
# A device call (`run` with carry [".device"], after publish.sh and stage.sh): per-layer truth for explain's study — the
# zoo models and the five peer exports of bench/explain-gpu.sh, fp16 and fp32, each profiled step by step at two batch
# sizes (bench --profile: R/NAME.json and R/NAME.layers.csv), with the ceilings cache kept (R/ceilings-cache). Off the
# device, for any run:
#   batchwise explain MODEL --engine cuda [--precision fp16] --ceilings-file R/ceilings-cache/F.json --no-measure -b B --json P.json
#   bench/explain-layers.py R/NAME.json P.json B        # explain's layers against the measured steps, by kind
# BATCHES (default 4,128) and PEERS as the study's; about 250-400 s on an H100.
source bench/device/call-lib.sh "${CALL_SECONDS:-560}"
unpack || { pack; exit 1; }
PEERS=${PEERS:-resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016}
BATCHES=${BATCHES:-4,128}
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
q ceilings 240 "$CLI" devices --ceilings --recalibrate -v
mkdir -p "$R/ceilings-cache" && cp "$BATCHWISE_CACHE_DIR"/ceilings/*.json "$R/ceilings-cache/" 2>/dev/null
models=(resnet50=zoo:resnet50 resnet18=zoo:resnet18 mobilenetv2=zoo:mobilenetv2 "yolov8n=zoo:yolov8n?size=640" bert=zoo:bert mlp=zoo:mlp)
for peer in ${PEERS//,/ }; do [ -f "$WORK/exports/$peer/model.onnx" ] && models+=("$peer=$WORK/exports/$peer/model.onnx"); done
for entry in "${models[@]}"; do
  name=${entry%%=*} model=${entry#*=}
  (( $(left) > 40 )) || { t "stopped before $name: the call's time is spent"; break; }
  q "$name-fp16" 30 "$CLI" bench "$model" --engine cuda --precision fp16 -b "$BATCHES" --duration 200ms --profile --json "$R/$name-fp16.json"
  q "$name-fp32" 30 "$CLI" bench "$model" --engine cuda -b "$BATCHES" --duration 200ms --profile --json "$R/$name-fp32.json"
done
pack
