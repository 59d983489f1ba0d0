#!/usr/bin/env bash
# Session 55, call 3 (CALL_SECONDS, default 200; carry .device after staging .device1..5): the engine's own fp16 product
# + bias + GELU, now the default on sm_90, in the form the session's probe call found fastest (the staged epilogue, the
# GELU by A&S's erfc: 82.8 us at 8192 x 3072 x 768 against cuBLASLt + its pass 105.0 on an H100), against
# BATCHWISE_GELU_PRODUCT=library. In order of need: MlpGpuTests (every GELU form against
# ONNX Runtime, the own one at ViT-S and BERT b=64, timed); DistilBERT (seq 128) at b=64, the library (cuBLASLt + the
# pass) against own in turn, twice, runs queued 20 at a time; ViT-S/16 and ConvNeXt-T at b=1 and 64,
# BERT at b=64, once each (at b=1 the products make fewer tiles than SMs: the library's either way); DistilBERT's per-step profile with own, then with the library.
source bench/device/call-lib.sh "${CALL_SECONDS:-200}"
unpack tests || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader >> "$R/log.txt"
FIRST="MlpGpuTests" CLASSES="MlpGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=100 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout 100 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,vit_small_patch16_224,convnext_tiny,bert --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK/exports")"
bench() { # bench TAG MODEL SHAPE BATCHES ENV...
  local tag=$1 model=$2 shape=$3 batches=$4; shift 4
  q $tag 25 env "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" $shape --queue 20 --engine cuda --precision fp16 -b $batches --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  bench distilbert-library-$round distilbert "--shape seq=128" 64 BATCHWISE_GELU_PRODUCT=library
  bench distilbert-own-$round distilbert "--shape seq=128" 64 BATCHWISE_GELU_PRODUCT=own
done
# The other models whose products with an erf GELU the own kernel takes, at the peer table's batches.
bench vits-library-1 vit_small_patch16_224 "" 1,64 BATCHWISE_GELU_PRODUCT=library
bench vits-own-1 vit_small_patch16_224 "" 1,64 BATCHWISE_GELU_PRODUCT=own
bench convnext-library-1 convnext_tiny "" 1,64 BATCHWISE_GELU_PRODUCT=library
bench convnext-own-1 convnext_tiny "" 1,64 BATCHWISE_GELU_PRODUCT=own
if (( $(left) > 60 )); then
  bench bert-library-1 bert "--shape seq=128" 64 BATCHWISE_GELU_PRODUCT=library
  bench bert-own-1 bert "--shape seq=128" 64 BATCHWISE_GELU_PRODUCT=own
fi
for v in own library; do
  (( $(left) > 25 )) && q distilbert-$v-prof 20 env BATCHWISE_GELU_PRODUCT=$v "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --profile --duration 0.3s --json "$R/distilbert-$v-prof.json"
done
pack
