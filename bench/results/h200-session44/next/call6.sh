#!/usr/bin/env bash
# Call 5 (build 3384567: the padding mask read once a key; base = 6746627's Batchwise.Cuda.dll): BERT / DistilBERT
# b=64 (seq 128) base against new, alternating; then GPU test classes on the final code until the deadline.
source bench/device/call-lib.sh "${CALL_SECONDS:-320}"
unpack tests base node || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | tr '\n' ' ')"
B="--shape seq=128 --engine cuda --precision fp16 --duration 0.5s --warmup 0.3s --max-windows 3"
for round in 1 2; do
  for m in bert distilbert; do
    q $m-base-b64-$round 30 "$BASE" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-base-b64-$round.json"
    q $m-new-b64-$round 30 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-new-b64-$round.json"
  done
done
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="AttentionGpuTests ModelGpuTests ShapeGpuTests CeilingsGpuTests NodeGpuTests OperatorGpuTests MlpGpuTests" \
  LIMITS="NodeGpuTests=150" TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=$(( $(left) - 20 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
