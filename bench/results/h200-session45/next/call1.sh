#!/usr/bin/env bash
# Call 1 (build da41825; publish HEAD, stage the parts, carry .device): 95b1963's BATCHWISE_GELU_CHUNKS at b=64 on the
# models whose peer rows are closest to 1.2x (BERT, ViT-S, HF ViT) and DistilBERT, 1 / 2 / 4 chunks alternating,
# two rounds, plus b=1 at 1 and 4; ResNet-50 fp16 b=1 at 1, 2 and 4 runs in flight; per-step profiles of BERT b=64 at 1 and 4; then the GPU classes on the final code
# (3ce9425's vectorized float input of a half plan was not GPU-run); then graph_vs_eager for BERT while time is left.
source bench/device/call-lib.sh "${CALL_SECONDS:-450}"
unpack tests node || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,vit_small_patch16_224,vit-hf --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
M="bert distilbert vit_small_patch16_224 vit-hf"
shape_of() { case $1 in bert|distilbert) echo "--shape seq=128" ;; esac; }
for round in 1 2; do
  for m in $M; do
    for c in 1 2 4; do
      q $m-c$c-b64-$round 30 env BATCHWISE_GELU_CHUNKS=$c "$CLI" bench "$WORK/exports/$m/model.onnx" $(shape_of $m) --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-c$c-b64-$round.json"
    done
  done
done
for m in $M; do
  for c in 1 4; do
    q $m-c$c-b1 30 env BATCHWISE_GELU_CHUNKS=$c "$CLI" bench "$WORK/exports/$m/model.onnx" $(shape_of $m) --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-c$c-b1.json"
  done
done
q r50-b1-conc 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 -c 1,2,4 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/r50-b1-conc.json"
for c in 1 4; do
  q bert-prof-c$c 25 env BATCHWISE_GELU_CHUNKS=$c "$CLI" bench "$WORK/exports/bert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/bert-prof-c$c.json"
done
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="MlpGpuTests AttentionGpuTests ModelGpuTests ShapeGpuTests NodeGpuTests OperatorGpuTests" \
  LIMITS="NodeGpuTests=150" TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=$(( $(left) - 100 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
timeout "$(lim $(( $(left) - 15 )))" python3 bench/peers/graph_vs_eager.py --model bert --batch 64 --out "$R/graph-bert.json" > "$R/graph-bert.txt" 2>&1
t "graph_vs_eager bert exit $? $(grep '^##' "$R/graph-bert.txt" | tr '\n' ';')"
pack
