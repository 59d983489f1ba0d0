#!/usr/bin/env bash
# Prepared in session 57, not run (CALL_SECONDS, default 560; carry .device after staging): the own GELU product's two
# experimental schedules (BATCHWISE_GELU_PRODUCT=pingpong and =handoff, never yet on a GPU) against the cooperative own
# kernel (the default) and the library. The test classes that run them (MlpGpuTests: every form against ONNX Runtime,
# each step timed; ModelGpuTests) and the ONNX node cases; then DistilBERT, BERT, HF ViT and ViT-S at b=64 with each
# form in turn, twice while time lasts, runs queued 20 at a time (session 55: own +7.2% DistilBERT, +6.1% BERT, +8.3%
# ViT-S over the library, H100); DistilBERT's per-step profile with FORM (default handoff). Run after next/probe.sh
# (../probe/pingpong.py) says which form is right and fast; FORMS="library own handoff" leaves one out.
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
    for form in ${FORMS:-library own pingpong handoff}; do bench $model-$form-$round $model "$shape" BATCHWISE_GELU_PRODUCT=$form; done
  done
done
(( $(left) > 25 )) && q distilbert-${FORM:-handoff}-prof 20 env BATCHWISE_GELU_PRODUCT=${FORM:-handoff} "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --profile --duration 0.3s --json "$R/distilbert-${FORM:-handoff}-prof.json"
pack
