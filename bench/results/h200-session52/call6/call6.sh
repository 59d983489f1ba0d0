#!/usr/bin/env bash
# Session 52, call 6 (~300 s; carry .device after staging .device1..4): the own fp16 warpgroup-MMA product with its bias
# and erf GELU (BATCHWISE_GELU_PRODUCT=own, 40a98df) inside the engine, on the GPU for the first time.
#   1. MlpGpuTests: ViT-S and BERT-base MLP blocks at b=64 with the own product against ONNX Runtime fp32 (and the default
#      beside it), each step's time in the plan (CUDA events).
#   2. DistilBERT (seq 128) with the own product against the default at b=64 (in turn, twice), b=8 and b=1; runs queued 20
#      at a time, as the peer table's.
#   3. compare of DistilBERT fp16 b=64 with the own product against ONNX Runtime.
source bench/device/call-lib.sh "${CALL_SECONDS:-330}"
unpack tests || { pack; exit 1; }
FIRST="MlpGpuTests" CLASSES="MlpGpuTests" LIMITS="MlpGpuTests=130" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=130 DEADLINE=$(( $(left) - 150 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt" 2>/dev/null
find "$R/gpu" -name 'mlp.md' -exec grep -h "gelu own\|gelu exact \|block\|own fp16" {} + | cut -c1-200 >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert --jobs 1 > "$R/exports.log" 2>&1
bench() { # bench TAG BATCH ENV...
  local tag=$1 b=$2; shift 2
  q $tag 25 env "$@" "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --queue 20 --engine cuda --precision fp16 -b $b --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  bench distilbert-b64-library-$round 64 BATCHWISE_GELU_PRODUCT=library
  bench distilbert-b64-own-$round 64 BATCHWISE_GELU_PRODUCT=own
done
for b in 8 1; do
  bench distilbert-b$b-library $b BATCHWISE_GELU_PRODUCT=library
  bench distilbert-b$b-own $b BATCHWISE_GELU_PRODUCT=own
done
q cmp-distilbert-own 40 env BATCHWISE_GELU_PRODUCT=own "$CLI" compare "$WORK/exports/distilbert/model.onnx" -e ort,cuda --precision fp16 -b 64 --shape seq=128 --rtol 0.05 --atol 0.05 --json "$R/cmp-distilbert-own.json"
t "compare: $(grep -E 'PASS|FAIL' "$R/cmp-distilbert-own.txt" | head -3 | tr '\n' ' ')"
pack
