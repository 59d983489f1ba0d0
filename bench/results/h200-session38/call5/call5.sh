#!/usr/bin/env bash
# Session 38, call 5: per-layer truth for the explain study's over-predictions (call 2): the engine's per-step profile
# (CUDA events between steps) of RegNetX-016 fp16 at b=256 and 4 (+24% and +36%), EfficientNet-B0 fp16 at b=4 (+34%),
# RegNetX-016 fp32 at b=2 (+43%); then ResNeXt-50 fp32 at b=128/256 again (+74% at 256: the measured curve fell from
# 3,360 to 2,532). Files land in $OUT/r as they are written (no pack: a cut call still returns what finished).
source bench/device/call-lib.sh 245
unpack || exit 1
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models regnetx_016,efficientnet_b0,resnext50_32x4d --jobs 3 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l)"
E=$WORK/exports
prof() { q "$1" 45 "$CLI" bench "$2" --engine cuda "${@:4}" -b "$3" --profile --duration 300ms --json "$R/$1.json"; }
prof rx-fp16-256 $E/regnetx_016/model.onnx 256 --precision fp16
prof eff-fp16-4 $E/efficientnet_b0/model.onnx 4 --precision fp16
prof rx-fp16-4 $E/regnetx_016/model.onnx 4 --precision fp16
prof rx-fp32-2 $E/regnetx_016/model.onnx 2
q rxt-fp32 60 "$CLI" bench $E/resnext50_32x4d/model.onnx --engine cuda -b 128,256 --duration 300ms --json "$R/rxt-fp32.json"
find "$R" -name '*.json' -size +200k -exec xz -9 {} \;
t done
