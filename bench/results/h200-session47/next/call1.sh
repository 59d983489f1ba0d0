#!/usr/bin/env bash
# PREPARED, NOT RUN (session 47 ran world-call.sh and call2.sh, a shorter form of this, instead). Session 46's call 5 (on 1b8c65b: the embeddings' Gather + sum + LayerNorm one kernel, the
# last LayerNorm writing the float output; BERT's profile added) (build after c41d4d4: Hugging Face's And-ed mask read per
# key): own against the default (auto: cuDNN at b=64) on BERT and DistilBERT at b=64, two rounds; each plan's steps
# (41 expected with cuDNN: the bias once, one zeroing kernel a layer of a block a sequence); GPT-2 and Llama at b=64, own
# against auto (causal masks); ViT-S and HF ViT at b=1, own
# against cudnn after a warm-up run, two rounds (session 46's b=1 pairs ran in the cold-build effect); DistilBERT b=64's
# per-step profile (what is left past attention: the embeddings' Gather + LayerNorm ran 14.5 + 23.4 us in session 45's
# BERT profile, about a third of the bandwidth); AttentionGpuTests.
# Then, on the same warm machine, the peer table: CALL_SECONDS=560 bash bench/device/world-call.sh.
source bench/device/call-lib.sh "${CALL_SECONDS:-260}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 100 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,vit_small_patch16_224,vit-hf,gpt2,llama --jobs 6 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
shape_of() { case $1 in bert|distilbert) echo "--shape seq=128" ;; esac; }
for m in bert distilbert vit_small_patch16_224 vit-hf; do
  q $m-warm 25 "$CLI" bench "$WORK/exports/$m/model.onnx" $(shape_of $m) --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.2s --max-windows 3
done
for round in 1 2; do
  for m in bert distilbert; do
    for a in own auto; do
      q $m-$a-b64-$round 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" $(shape_of $m) --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b64-$round.json"
    done
  done
  # Causal masks (a bias per query and key under cuDNN, a zeroing block a query): session 46's table had GPT-2 b=64
  # +1% and Llama b=64 -1.6% against session 45's own kernel, across runs.
  for m in gpt2 llama; do
    for a in own auto; do
      q $m-$a-b64-$round 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b64-$round.json"
    done
  done
  for m in vit_small_patch16_224 vit-hf; do
    for a in own cudnn; do
      q $m-$a-b1-$round 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b1-$round.json"
    done
  done
done
for f in "$R"/*-b64-1.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], [b['steps'] for p in d['points'] for b in p.get('plan_builds', [])])" "$f" >> "$R/log.txt"; done
q bert-prof 25 "$CLI" bench "$WORK/exports/bert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/bert-prof.json"
q distilbert-prof 25 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distilbert-prof.json"
q attention-tests 60 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.AttentionGpuTests
grep -E "Total:|\[FAIL\]" "$R/attention-tests.txt" | head -8 >> "$R/log.txt"
pack
