#!/usr/bin/env bash
# PREPARED, NOT RUN (for the next session; publish HEAD, stage the parts, carry .device): 95b1963's BATCHWISE_GELU_CHUNKS
# (a product followed by erf GELU in row chunks, the pass reading each chunk from L2) at b=64 on the models whose rows
# are closest to 1.2x (BERT 1.17x, ViT-S 1.22x, DeiT-S 1.23x, HF ViT 1.24x) and DistilBERT: 1 (whole), 2, 4 alternating,
# two rounds; a per-step profile at 4; MlpGpuTests (its exact-chunks2/4 forms time the ViT-S MLP block and check it
# against ONNX Runtime). About 300 s. Make it the default only where it wins on every model and never loses at b=1.
source bench/device/call-lib.sh "${CALL_SECONDS:-420}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,vit_small_patch16_224,deit_small_patch16_224,vit-hf --jobs 5 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
for round in 1 2; do
  for m in bert distilbert vit_small_patch16_224 deit_small_patch16_224 vit-hf; do
    shape=""; case $m in bert|distilbert) shape="--shape seq=128" ;; esac
    for c in 1 2 4; do
      q $m-c$c-b64-$round 30 env BATCHWISE_GELU_CHUNKS=$c "$CLI" bench "$WORK/exports/$m/model.onnx" $shape --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-c$c-b64-$round.json"
    done
  done
done
q bert-prof-c4 20 env BATCHWISE_GELU_CHUNKS=4 "$CLI" bench "$WORK/exports/bert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/bert-prof-c4.json"
q mlp-tests 90 env BATCHWISE_REQUIRE_GPU=1 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.MlpGpuTests
pack
