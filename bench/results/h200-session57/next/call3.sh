#!/usr/bin/env bash
# Session 57 (CALL_SECONDS, default 400; carry .device after staging): the rows the unmasked PyTorch peer decides, on one
# card in one run: BERT, DistilBERT and HF ViT exported there, then world.py --models for them (b=1 and 64; the engine's
# default, the cooperative own GELU product, session 57's probe having put both new schedules behind it), the worst two
# at b=64 profiled; then PyTorch's unmasked BERT b=64 kernels a run (graph_vs_eager.py) on the same card.
source bench/device/call-lib.sh "${CALL_SECONDS:-400}"
unpack || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout "$(lim 120)" python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models bert,distilbert,vit-hf --jobs 3 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK/exports")"
timeout "$(lim 260)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models bert,distilbert,vit-hf --jobs 3 --profile-worst 2 --budget $(( $(left) - 50 )) ${REFERENCE:+--reference "$REFERENCE"} > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
(( $(left) > 35 )) && timeout "$(lim 40)" python3 bench/peers/graph_vs_eager.py --model bert --batch 64 --out "$R/graph-bert.json" > "$R/graph-bert.txt" 2>&1
t "graph_vs_eager exit $?"
pack
