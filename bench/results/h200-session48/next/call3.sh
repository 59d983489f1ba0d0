#!/usr/bin/env bash
# Session 48, call 3 (~200 s): the peer table's BERT and DistilBERT rows again, twice, on one machine (both sides each
# time). Call 2's table had PyTorch's eager SDPA at b=64 at 23,719 (DistilBERT) and 32,958 (BERT) seq/s, against 46,590
# and 44,331 in session 47 with the same versions; its windows fell from 26,382 to ~23,500. Is the peer that slow here,
# or was that run's host the cause (eager launches are host-bound when the CPU is slow)?
source bench/device/call-lib.sh "${CALL_SECONDS:-230}"
unpack || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 90 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models bert,distilbert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l)"
for round in 1 2; do
  timeout "$(lim 100)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world$round" --work "$WORK/exports" \
    --models bert,distilbert --jobs 2 --budget $(( $(left) - 20 )) > "$R/world$round.log" 2>&1
  t "round $round exit $?"
  grep -E "^\| (bert|distilbert) .* 64 " "$R/world$round/world.md" | cut -d'|' -f2,4,6-11 >> "$R/log.txt"
done
pack
