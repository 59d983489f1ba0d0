#!/usr/bin/env bash
# Prepared in session 56, not run (CALL_SECONDS, default 220; carry .device after staging .device1..5): the own fp16
# product with the residual add and the LayerNorm in it (BATCHWISE_LAYERNORM_PRODUCT=own, 2588d327, off by default, never
# yet on a GPU) against the default plan (cuBLASLt's product with bias and residual, then the LayerNorm kernel).
# LayerNormProductGpuTests first (correct against ONNX Runtime at 8192 x 768 x 768 and x 3072, each step timed in turn
# with the library); then DistilBERT and BERT (seq 128) at b=64, default against own in turn, twice, runs queued 20 at a
# time; DistilBERT's per-step profile with own. Run it after next/probe.sh says whether the fused kernel pays at all.
source bench/device/call-lib.sh "${CALL_SECONDS:-220}"
unpack tests || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader >> "$R/log.txt"
CLASSES="LayerNormProductGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=100 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout 100 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK/exports")"
bench() { # bench TAG MODEL ENV...
  local tag=$1 model=$2; shift 2
  q $tag 25 env "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" --shape seq=128 --queue 20 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  for model in distilbert bert; do
    bench $model-library-$round $model BATCHWISE_LAYERNORM_PRODUCT=library
    bench $model-own-$round $model BATCHWISE_LAYERNORM_PRODUCT=own
  done
done
(( $(left) > 25 )) && q distilbert-own-prof 20 env BATCHWISE_LAYERNORM_PRODUCT=own "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --profile --duration 0.3s --json "$R/distilbert-own-prof.json"
pack
