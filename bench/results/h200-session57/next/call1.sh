#!/usr/bin/env bash
# Prepared in session 57, not run (CALL_SECONDS, default 560; carry .device after staging): the ping-pong own GELU
# product (BATCHWISE_GELU_PRODUCT=pingpong, never yet on a GPU) against the cooperative own kernel (the default) and the
# library. The test classes that run it (MlpGpuTests: every form against ONNX Runtime, each step timed; ModelGpuTests)
# and the ONNX node cases; then DistilBERT, BERT, HF ViT and ViT-S at b=64 with library, own and pingpong in turn,
# twice, runs queued 20 at a time (session 55: own +7.2% DistilBERT, +6.1% BERT, +8.3% ViT-S over the library, H100);
# DistilBERT's per-step profile with pingpong. Run after ../probe/pingpong.py says the kernel is right and fast.
source bench/device/call-lib.sh "${CALL_SECONDS:-560}"
unpack tests node || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader >> "$R/log.txt"
CLASSES="MlpGpuTests ModelGpuTests NodeGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=200 BATCHWISE_ONNX_NODE_TESTS=$NODE bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout "$(lim 120)" python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert,vit-hf,vit_small_patch16_224 --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK/exports")"
bench() { # bench TAG MODEL SHAPE ENV...
  local tag=$1 model=$2 shape=$3; shift 3
  q $tag 25 env "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" $shape --queue 20 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  for model in distilbert bert vit-hf vit_small_patch16_224; do
    shape=""; [[ $model == distilbert || $model == bert ]] && shape="--shape seq=128"
    (( $(left) > 60 )) || break 2
    for form in library own pingpong; do bench $model-$form-$round $model "$shape" BATCHWISE_GELU_PRODUCT=$form; done
  done
done
(( $(left) > 25 )) && q distilbert-pingpong-prof 20 env BATCHWISE_GELU_PRODUCT=pingpong "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --profile --duration 0.3s --json "$R/distilbert-pingpong-prof.json"
pack
