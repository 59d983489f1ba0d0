#!/usr/bin/env bash
# Session 19, call 3: issue 16's peer table from the current build (every model, b=1 and 64, against PyTorch's best in
# the same run; the two lowest ratios profiled), first since session 9's.
source bench/device/call-lib.sh 560
unpack || exit 1
timeout "$(lim 540)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --jobs 6 --budget 470 --profile-worst 2 > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
pack
