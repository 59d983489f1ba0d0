#!/usr/bin/env bash
# Session 41's third call (after stage.sh; carry .device): per-layer truth for the study's fp32 misses on 85697f8 —
# ResNet-50 at b=64/256 (+34% at 256), ResNet-18 at b=16 (-32%), ResNeXt-50 at b=128 (+27%), BERT at b=16/64 (knee) —
# bench --profile, to set against `explain --ceilings-file` replays off the device (bench/explain-layers.py).
source bench/device/call-lib.sh "${CALL_SECONDS:-240}"
unpack || { pack; exit 1; }
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models resnext50_32x4d --jobs 1 > "$R/exports.log" 2>&1
q resnet50-fp32 60 "$CLI" bench zoo:resnet50 --engine cuda -b 64,256 --duration 200ms --profile --json "$R/resnet50-fp32.json"
q resnet18-fp32 30 "$CLI" bench zoo:resnet18 --engine cuda -b 16 --duration 200ms --profile --json "$R/resnet18-fp32.json"
q resnext-fp32 45 "$CLI" bench "$WORK/exports/resnext50_32x4d/model.onnx" --engine cuda -b 128 --duration 200ms --profile --json "$R/resnext-fp32.json"
q bert-fp32 40 "$CLI" bench zoo:bert --engine cuda -b 16,64 --duration 200ms --profile --json "$R/bert-fp32.json"
pack
