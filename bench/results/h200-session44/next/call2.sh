#!/usr/bin/env bash
# Call 2: DistilBERT and BERT at b=64 and b=1 fp16 (seq 128): default (64-row attention block) against
# BATCHWISE_ATTENTION_ROWS=128, alternating; then AttentionGpuTests (its _rows128 cases).
source bench/device/call-lib.sh 580
[ -x "$WORK/cli/Batchwise.Cli" ] && CLI=$WORK/cli/Batchwise.Cli || { unpack || { pack; exit 1; }; }
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
[ -f "$WORK/exports/bert/model.onnx" ] || timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | tr '\n' ' ')"
for round in 1 2; do
  for m in distilbert bert; do
    for rows in 64 128; do
      q $m-r$rows-b64-$round 30 env BATCHWISE_ATTENTION_ROWS=$rows "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-r$rows-b64-$round.json"
      q $m-r$rows-b1-$round 30 env BATCHWISE_ATTENTION_ROWS=$rows "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-r$rows-b1-$round.json"
    done
  done
done
q distil-prof128 20 env BATCHWISE_ATTENTION_ROWS=128 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distil-prof128.json"
q attention-tests $(( $(left) - 15 )) "$TESTS" -class Batchwise.Cuda.Tests.Gpu.AttentionGpuTests
pack
