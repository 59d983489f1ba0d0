#!/usr/bin/env bash
# Call 3: why cuDNN attention is not taken in the BERT / DistilBERT exports (call 1: 39 steps with it and without; the
# mask's Expand is a step of its own in their profiles): the mask's subgraph (mask_graph.py); ViT-S and HF ViT at b=1,
# own and cuDNN alternating twice after a warm-up run (call 1's b=1 pairs ran own first, in the cold-build caveat).
source bench/device/call-lib.sh "${CALL_SECONDS:-150}"
unpack || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 100 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,vit_small_patch16_224,vit-hf --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
for m in bert distilbert; do python3 bench/results/h200-session46/next/mask_graph.py "$WORK/exports/$m/model.onnx" > "$R/mask-$m.txt" 2>&1; done
head -c 6000 "$R/mask-bert.txt" >> "$R/log.txt"
for m in vit_small_patch16_224 vit-hf; do
  q $m-warm-b1 25 "$CLI" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.3s --max-windows 3
  for round in 1 2; do
    for a in own cudnn; do
      q $m-$a-b1-$round 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b1-$round.json"
    done
  done
done
pack
