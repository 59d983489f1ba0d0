#!/usr/bin/env bash
# Session 49, call 2 (~220 s; carry .device): call 1 found the lengths path level with the bias (DistilBERT / BERT b=64)
# because the flagged own kernel's launch of 1,536 mostly empty blocks (6.3 us with events) ate cuDNN's gain (27.8
# against 29.2 us). The commit after makes its grid at most four blocks an SM, each looping over the tiles. Here:
# lengths against bias at b=64, alternating, two rounds; DistilBERT's per-step profile; the padded-mask compare on
# DistilBERT; the peer rows of DistilBERT and BERT; then the attention GPU classes to the deadline.
source bench/device/call-lib.sh "${CALL_SECONDS:-220}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models bert,distilbert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
for round in 1 2; do
  for m in distilbert bert; do
    for mode in lengths bias; do
      q $m-$mode-$round 20 env BATCHWISE_ATTENTION_MASK=$mode "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$mode-$round.json"
    done
  done
done
q distilbert-prof 20 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distilbert-prof.json"
timeout 20 python3 - "$WORK/masks" <<'PY'
import sys, os, numpy as np
root = sys.argv[1]; rng = np.random.default_rng(49); os.makedirs(root, exist_ok=True)
mask = np.ones((64, 128), dtype=np.int64)
for i in range(40): mask[i, rng.integers(1, 129):] = 0
for i in range(40, 56): mask[i, :rng.integers(1, 100)] = 0
mask[63, :] = 0
np.save(f"{root}/input_ids.npy", rng.integers(1000, 20000, size=(64, 128), dtype=np.int64)); np.save(f"{root}/attention_mask.npy", mask)
PY
q cmp-distilbert-padded 30 "$CLI" compare "$WORK/exports/distilbert/model.onnx" -e ort,cuda --precision fp16 -b 64 --shape seq=128 --inputs "$WORK/masks" --rtol 0.05 --atol 0.05 --json "$R/cmp-distilbert-padded.json"
t "  $(grep -E 'last_hidden|PASS|FAIL' "$R/cmp-distilbert-padded.txt" | tr -s ' ' | tr '\n' ' ' | cut -c1-300)"
timeout "$(lim 110)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models distilbert,bert --jobs 2 --budget 95 --reference bench/results/h200-session47/call1/world.json.xz > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^\| (distil)?bert" "$R/world/world.md" | cut -c1-300 >> "$R/log.txt"
FIRST="AttentionGpuTests CudnnAttentionGpuTests ModelGpuTests" CLASSES="AttentionGpuTests CudnnAttentionGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
