#!/usr/bin/env bash
# Session 31, call 3 (main at .device/rev): issue 16's peer table on the session's final engine, all 19 models
# against PyTorch's best (fp16, channels-last, CUDA graph; SDPA for the transformers) in one run of world.py, exported
# on the machine first (the last full table was session 24's, on 91ed46b).
source bench/device/call-lib.sh 560
unpack || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --jobs 12 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
timeout "$(lim 420)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --jobs 6 --budget $(( $(left) - 25 )) > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
pack
