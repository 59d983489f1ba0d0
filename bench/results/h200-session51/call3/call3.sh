#!/usr/bin/env bash
# Session 51, call 3 (~240 s; carry .device after staging .device1..4): what a fused erf GELU could give DistilBERT at
# b=64 (1.17x of PyTorch in call 1, the table's one row below 1.2x; its lin1 output's GELU pass moves 100 MB a layer).
#   1. cuDNN's runtime-fused product + bias + erf GELU (CudnnMatmulEpilogueGpuTests): every configuration heuristics
#      modes A and B offer, each timed (session 46 timed mode A's first 4, all engine 4, at 96.2 us against the plan's
#      100.3; engine 7 came 8th and was never built).
#   2. The bound: DistilBERT b=64 with the GELU as cuBLASLt's epilogue in its tanh form (BATCHWISE_GELU=tanh, |delta| <=
#      4.7e-4: not exact, so never the default) against the default, in turn, twice, runs queued 20 at a time.
#   3. L2PersistenceGpuTests (its window check fixed after call 2).
source bench/device/call-lib.sh "${CALL_SECONDS:-240}"
unpack tests || { pack; exit 1; }
CLASSES="CudnnMatmulEpilogueGpuTests L2PersistenceGpuTests" LIMITS="CudnnMatmulEpilogueGpuTests=150" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=$(( $(left) - 70 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
find "$R/gpu" -name 'cudnn-matmul-gelu-probe.md' -exec grep -h "best\|mode" {} + | cut -c1-200 >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert --jobs 1 > "$R/exports.log" 2>&1
for round in 1 2; do
  for g in exact tanh; do
    q distilbert-$g-$round 25 env BATCHWISE_GELU=$g "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --queue 20 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/distilbert-$g-$round.json"
  done
done
pack
