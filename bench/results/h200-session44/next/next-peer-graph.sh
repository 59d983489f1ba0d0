#!/usr/bin/env bash
# PREPARED, NOT RUN (for the next session; publish HEAD, stage the parts, carry .device): why the Hugging Face peers'
# CUDA-graph variants ran slower than eager at b=64 in session 44 (BERT 18,363 against 42,841 seq/s): their kernels a
# run, eager against the captured graph (bench/peers/graph_vs_eager.py), for BERT, DistilBERT and HF ViT at b=64; then
# CeilingsGpuTests to an end on schema 12 (cut at 90 s in session 44's call 6). About 250 s. Then the peer table
# (`bash bench/device/world-call.sh`) in its own call.
source bench/device/call-lib.sh "${CALL_SECONDS:-420}"
unpack tests || { pack; exit 1; }
for m in bert distilbert vit-hf; do
  timeout "$(lim 90)" python3 bench/peers/graph_vs_eager.py --model $m --batch 64 --out "$R/graph-$m.json" > "$R/graph-$m.txt" 2>&1
  t "graph_vs_eager $m exit $? $(grep '^##' "$R/graph-$m.txt" | tr '\n' ';')"
done
q ceilings-tests $(( $(left) - 15 )) env BATCHWISE_REQUIRE_GPU=1 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CeilingsGpuTests
pack
