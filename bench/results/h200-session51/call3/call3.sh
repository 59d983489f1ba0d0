#!/usr/bin/env bash
# Session 51, call 3 (~180 s; carry .device after staging .device1..4): what a fused erf GELU could give DistilBERT at
# b=64 (1.17x of PyTorch in call 1, the table's one row below 1.2x; its lin1 output's GELU pass moves 100 MB a layer).
#   1. cuDNN's runtime-fused product + bias + erf GELU (CudnnMatmulEpilogueGpuTests): every configuration heuristics
#      modes A and B offer, each timed (session 46 timed mode A's first 4, all engine 4, at 96.2 us against the plan's
#      100.3; engine 7 came 8th and was never built).
#   2. The bound: DistilBERT b=64 with the GELU as cuBLASLt's epilogue in its tanh form (BATCHWISE_GELU=tanh, |delta| <=
#      4.7e-4: not exact, so never the default) against the default, in turn, twice, runs queued 20 at a time.
#   3. PyTorch's cuDNN (pip's, 9.19) against the engine's default (9.14) on the same DistilBERT b=64 runs: PyTorch's
#      eager SDPA ran cuDNN's flash attention at 18.5 us a layer at BERT b=64 (session 45), the engine's step takes 27-28.
#   4. L2PersistenceGpuTests (its window check fixed after call 2).
source bench/device/call-lib.sh "${CALL_SECONDS:-180}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert --jobs 1 > "$R/exports.log" 2>&1
# PyTorch's cuDNN (pip's nvidia-cudnn, 9.19 in session 50's table) against the one the engine finds first (9.14): PyTorch's
# eager SDPA ran cuDNN's flash attention at 18.5 us a layer at BERT b=64 (session 45) against the engine's 27-28.
PIPCUDNN=$(python3 -c "import os, nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0], 'lib'))" 2>/dev/null)
t "pip cuDNN: $PIPCUDNN $(ls "$PIPCUDNN" 2>/dev/null | grep -c so); engine's default: see the runs' engine lines"
bench() { # bench TAG ENV...
  local tag=$1; shift
  q $tag 25 env "$@" "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --queue 20 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
  t "  $(grep -o '"cudnn": "[^"]*"' "$R/$tag.json" | head -1)"
}
for round in 1 2; do
  bench distilbert-exact-$round BATCHWISE_GELU=exact
  [ -n "$PIPCUDNN" ] && bench distilbert-pipcudnn-$round BATCHWISE_CUDA_PATH="$PIPCUDNN"
  bench distilbert-tanh-$round BATCHWISE_GELU=tanh
done
FIRST="L2PersistenceGpuTests" CLASSES="L2PersistenceGpuTests CudnnMatmulEpilogueGpuTests" LIMITS="CudnnMatmulEpilogueGpuTests=$(( $(left) - 40 ))" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
find "$R/gpu" -name 'cudnn-matmul-gelu-probe.md' -exec grep -h "best\|mode" {} + | cut -c1-200 >> "$R/log.txt"
pack
