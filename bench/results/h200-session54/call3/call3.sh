#!/usr/bin/env bash
# Session 54, call 3 (CALL_SECONDS, default 300; carry .device after staging .device1..5): the engine's own fp16 product
# + bias + erf GELU in its persistent, warp-specialized form with the tile written through shared memory
# (BATCHWISE_GELU_PRODUCT=own), as the probe's call 1 found the direct half2 stores kept it behind cuBLASLt + the pass.
# In order of need (the device time was short): MlpGpuTests (every GELU form against ONNX Runtime, the own one at ViT-S
# and BERT b=64, timed); DistilBERT (seq 128) at b=64, the default (cuBLASLt + the pass) against own in turn, twice,
# runs queued 20 at a time; ViT-S/16 and BERT the same, once; DistilBERT's per-step profile with own; then the probe's
# call 2 (bench/results/h200-session54/probe/call2.sh: the staged stores in each persistent form) with what is left.
source bench/device/call-lib.sh "${CALL_SECONDS:-300}"
unpack tests || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader >> "$R/log.txt"
FIRST="MlpGpuTests" CLASSES="MlpGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=100 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout 90 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert,vit_small_patch16_224 --jobs 3 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK/exports")"
bench() { # bench TAG MODEL SHAPE ENV...
  local tag=$1 model=$2 shape=$3; shift 3
  q $tag 20 env "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" $shape --queue 20 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  bench distilbert-default-$round distilbert "--shape seq=128" BATCHWISE_GELU_PRODUCT=library
  bench distilbert-own-$round distilbert "--shape seq=128" BATCHWISE_GELU_PRODUCT=own
done
bench vits-default-1 vit_small_patch16_224 "" BATCHWISE_GELU_PRODUCT=library
bench vits-own-1 vit_small_patch16_224 "" BATCHWISE_GELU_PRODUCT=own
bench bert-default-1 bert "--shape seq=128" BATCHWISE_GELU_PRODUCT=library
bench bert-own-1 bert "--shape seq=128" BATCHWISE_GELU_PRODUCT=own
q distilbert-own-prof 30 env BATCHWISE_GELU_PRODUCT=own "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --profile --duration 0.3s --json "$R/distilbert-own-prof.json"
if [ "${PROBE:-1}" = 1 ] && (( $(left) > 70 )); then
  OUT=$R/probe timeout $(( $(left) - 10 )) bash bench/results/h200-session54/probe/call2.sh > "$R/probe.txt" 2>&1
  t "probe: $(grep -c 'own ' "$R/probe.txt") rows"
fi
pack
