#!/usr/bin/env bash
# Session 55, call 2 (CALL_SECONDS, default 330; after call 1 on the same warm machine: its parts and exports kept): the
# peer table's rows of the models whose erf-GELU products the own kernel now takes by default (DistilBERT, BERT, ViT-S,
# DeiT-S, HF ViT, ConvNeXt-T, Swin-T), each against PyTorch's best in one run, judged on an H100 against session 47's
# peer (world.py --reference). Not the whole table: the device time left after the refused starts did not reach it.
source bench/device/call-lib.sh "${CALL_SECONDS:-330}"
unpack || { pack; exit 1; }
MODELS=${MODELS:-distilbert,bert,vit_small_patch16_224,deit_small_patch16_224,vit-hf,convnext_tiny,swin_tiny_patch4_window7_224}
mkdir -p "$R/exports"
timeout 120 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models "$MODELS" --jobs 8 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
ref=
nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100 && ref=bench/results/h200-session47/call1/world.json.xz
timeout "$(lim 400)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models "$MODELS" --jobs 6 --budget $(( $(left) - 20 )) ${ref:+--reference "$ref"} > "$R/world.log" 2>&1
t "world exit $? (reference: ${ref:-none})"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
pack
