#!/usr/bin/env bash
# Session 51, call 1 (~590 s; carry .device after staging .device1..4): issue 16's peer table in one run, Batchwise's
# runs queued 20 at a time back to back (world.py's new default, as PyTorch's windows are), judged against session 47's
# peer (REFERENCE). Where call 1 could not run, first the flagged attention kernel's one-round check (8729b5c) on the GPU:
# DistilBERT against ONNX Runtime with right-, left-padded and empty sequences (session 49's mask), and the queue's GPU
# class.
source bench/device/call-lib.sh "${CALL_SECONDS:-590}"
unpack tests || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --jobs 12 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
if [ "${CHECKS:-1}" = 1 ]; then
  timeout 20 python3 bench/device/padded_masks.py "$WORK/masks"
  q cmp-distilbert-padded 40 "$CLI" compare "$WORK/exports/distilbert/model.onnx" -e ort,cuda --precision fp16 -b 64 --shape seq=128 --inputs "$WORK/masks" --rtol 0.05 --atol 0.05 --json "$R/cmp-distilbert-padded.json"
  t "  $(grep -E 'last_hidden|PASS|FAIL' "$R/cmp-distilbert-padded.txt" | tr -s ' ' | tr '\n' ' ' | cut -c1-300)"
  CLASSES="QueuedRunsGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=40 DEADLINE=45 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
  cat "$R/gpu/summary.txt" >> "$R/log.txt"
fi
timeout "$(lim 480)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --jobs 6 --budget $(( $(left) - 25 )) --reference bench/results/h200-session47/call1/world.json.xz > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
pack
