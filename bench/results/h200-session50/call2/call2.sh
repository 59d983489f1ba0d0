#!/usr/bin/env bash
# Session 50, call 2, as it ran (an inline command on call 1's warm machine, 49 s; carry .device): BERT's and
# DistilBERT's peer rows with Batchwise's runs queued (world.py's new --queue 20), judged against session 47's peer.
source bench/device/call-lib.sh 118; unpack || { pack; exit 1; }
timeout 112 python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" --models distilbert,bert --jobs 2 --budget 100 --reference bench/results/h200-session47/call1/world.json.xz > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^\| (distil)?bert" "$R/world/world.md" | cut -c1-260 >> "$R/log.txt"
pack
