#!/usr/bin/env bash
# PREPARED, NOT RUN (next session; publish of the final commit): issue 16's peer table, all 19 models against PyTorch's
# best in one run of world.py (last full table: session 31 on an H200, 38 of 38 rows >= 1.2x; since then the int8 work,
# the fp32 workspace default and 751dabd's SiLU chains after the own kernels). As session 31's call 3.
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
