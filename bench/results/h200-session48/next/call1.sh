#!/usr/bin/env bash
# Session 48, call 2 (~330 s): what the tactic searches choose. At b=64 fp16, each variant planned afresh (its own
# BATCHWISE_CACHE_DIR, so every product and attention is timed again), DistilBERT twice (alternating), the others once:
#   default                  cuDNN's attention: the fastest of its first 8 configurations (new default), 8 GEMM candidates
#   configs1                 BATCHWISE_ATTENTION_CONFIGS=1 (the heuristics' first, as before)
#   cands32                  BATCHWISE_MATMUL_CANDIDATES=32
#   random                   BATCHWISE_TACTIC_DATA=random (candidates timed on values in [-1, 1), not zeros)
#   cands32-random           both
# on DistilBERT and BERT; default against configs1 on ViT-S and HF ViT. Then DistilBERT's graph around its mask (to fold
# what runs before the bias kernel), the cuDNN probe (each candidate timed) and the attention / model GPU tests.
source bench/device/call-lib.sh "${CALL_SECONDS:-420}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 120 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,vit_small_patch16_224,vit-hf --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
run() { # run TAG MODEL ENV...
  local tag=$1 model=$2; shift 2
  rm -rf "$WORK/cache-$tag"
  q $tag 30 env BATCHWISE_CACHE_DIR="$WORK/cache-$tag" "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  models="distilbert bert"; [ $round = 2 ] && models=distilbert
  for m in $models; do
    run $m-default-$round $m
    run $m-configs1-$round $m BATCHWISE_ATTENTION_CONFIGS=1
    run $m-cands32-$round $m BATCHWISE_MATMUL_CANDIDATES=32
    run $m-random-$round $m BATCHWISE_TACTIC_DATA=random
    run $m-cands32-random-$round $m BATCHWISE_MATMUL_CANDIDATES=32 BATCHWISE_TACTIC_DATA=random
  done
  [ $round = 2 ] && break
  for m in vit_small_patch16_224 vit-hf; do
    run $m-default-$round $m
    run $m-configs1-$round $m BATCHWISE_ATTENTION_CONFIGS=1
  done
done
timeout 30 python3 - "$WORK/exports/distilbert/model.onnx" > "$R/distilbert-mask.txt" 2>&1 <<'PY'
import sys, onnx
g = onnx.load(sys.argv[1], load_external_data=False).graph
producers = {o: n for n in g.node for o in n.output}
consumers = {}
for n in g.node:
    for i in n.input:
        consumers.setdefault(i, []).append(n)
seen, todo = set(), ["attention_mask"]
while todo and len(seen) < 60:
    v = todo.pop(0)
    for n in consumers.get(v, []):
        if n.name in seen or "layer.1" in n.name:
            continue
        seen.add(n.name)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v if not hasattr(v, "dims") else f"tensor{list(v.dims)}") for k, v in attrs.items()}
        print(n.op_type, n.name, list(n.input), "->", list(n.output), attrs)
        todo.extend(n.output)
PY
t "mask graph: $(wc -l < "$R/distilbert-mask.txt") nodes"
q cudnn-probe 40 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CudnnAttentionGpuTests
grep -E "candidate|Total:" "$R"/cudnn-probe.txt | grep -E "us \||Total" | cut -c1-200 >> "$R/log.txt"
FIRST="AttentionGpuTests ModelGpuTests" CLASSES="AttentionGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
