#!/usr/bin/env bash
# AS RAN in call 5 (carry .device): the explain study's BERT rows on the probe whose GEMM tables time the engine's candidates
# (schema 12), calibration measured afresh; then DistilBERT and BERT (4 layers, seq 128) at b=64 fp16, the peer table's two
# rows under 1.2x: default, PDL on, the tanh GELU epilogue, and a per-step profile.
source bench/device/call-lib.sh "${CALL_SECONDS:-320}"
unpack || { pack; exit 1; }
CLI=$CLI OUT=$R/explain ONLY=bert BUDGET=$(( $(left) - 60 )) bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -E '^[0-9]+ of [0-9]+ runs' "$R/explain/table.md" 2>/dev/null); $(grep -E '^(fp32|fp16)/gemm table' "$R/explain/ceilings.txt" | tr '\n' ';')"
rm -rf "$R/explain/cache"
mkdir -p "$R/exports"
timeout "$(lim 40)" python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
for m in distilbert bert; do
  M=$WORK/exports/$m/model.onnx
  [ -f "$M" ] || continue
  for cfg in default pdl tanh; do
    envs="BATCHWISE_PDL=off"; [ $cfg = pdl ] && envs="BATCHWISE_PDL=on"; [ $cfg = tanh ] && envs="BATCHWISE_PDL=off BATCHWISE_GELU=tanh"
    q $m-$cfg 20 env $envs "$CLI" bench "$M" --engine cuda --precision fp16 -b 64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-$cfg.json"
  done
done
q distilbert-prof 25 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --engine cuda --precision fp16 -b 64 --duration 300ms --profile --json "$R/distilbert-prof.json"
pack
