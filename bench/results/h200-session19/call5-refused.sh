#!/usr/bin/env bash
# Session 19, call 5: the one row below 1.2x in call 3 (DistilBERT b=64, against PyTorch eager SDPA 49,126 where session 9
# measured 14,982) and BERT, b=64, PyTorch timed over 9 windows of 0.5 s instead of 3 of 0.3 s.
source bench/device/call-lib.sh 215
unpack || exit 1
timeout "$(lim 200)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models distilbert,bert --batches 64 --torch-windows 9 --torch-window-seconds 0.5 --jobs 2 --budget 190 > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\| (distilbert|bert) " "$R/world/world.md" | cut -c1-200 >> "$R/log.txt"
pack
