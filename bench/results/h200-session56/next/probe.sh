#!/usr/bin/env bash
# Prepared in session 56, not run (python only: no carry, no staging; ~200 s): the peer table's new "unmasked" PyTorch
# variant (world.py: transformers' SDPA call given no mask, captured into a CUDA graph) for the five transformers it
# applies to, b=1 and 64, beside eager and the plain graph; then BERT b=64's kernels a run under each variant
# (graph_vs_eager.py), to see that the unmasked graph runs eager's cuDNN flash kernel and not the fp32 math path; then
# the LayerNorm fused into the product before it (../probe/gemm_layernorm.py, ~40 s): does it pay at BERT's b=64 shapes?
set -uo pipefail
mkdir -p "$OUT"
timeout 150 python3 bench/results/h200-session56/next/unmasked.py > "$OUT/unmasked.jsonl" 2> "$OUT/unmasked.log"
echo "unmasked exit $?"
cut -c1-240 "$OUT/unmasked.jsonl"
timeout 60 python3 bench/peers/graph_vs_eager.py --model bert --batch 64 --out "$OUT/graph-bert.json" > "$OUT/graph-bert.txt" 2>&1
echo "graph_vs_eager exit $?"
grep "^##" "$OUT/graph-bert.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 120 python3 bench/results/h200-session56/probe/gemm_layernorm.py --out "$OUT" 2>&1 | tail -n 30
