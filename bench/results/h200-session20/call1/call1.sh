#!/usr/bin/env bash
# Session 20, call 1: the Q/K/V projections as one product, the Gather in 16-byte chunks and the Expand-ed mask read
# through broadcast strides (main at .device/rev), against b5b199a (flat overlay of its Batchwise.Cuda.dll, "base"):
# the GPU classes those touch with ONNX's node cases, then DistilBERT and BERT at b=64 (seq 128) against PyTorch's best
# (9 windows of 0.5 s), both builds, and DistilBERT's layer profile.
source bench/device/call-lib.sh 520
unpack tests base node || { pack; exit 1; }
CLASSES="AttentionGpuTests MlpGpuTests ModelGpuTests NodeGpuTests KernelCaseGpuTests OperatorGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=150 BATCHWISE_ONNX_NODE_TESTS=$NODE bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
grep -h "attention throughput" "$R"/gpu/*.log "$R"/gpu/*.md 2>/dev/null | sort -u >> "$R/log.txt"
timeout "$(lim 220)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models distilbert,bert --batches 64 --torch-windows 9 --torch-window-seconds 0.5 --jobs 2 --budget 210 > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\| (distilbert|bert) " "$R/world/world.md" | cut -c1-220 >> "$R/log.txt"
for m in distilbert bert; do
  q $m-base 40 "$BASE" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 64 --duration 1s --warmup 0.3s --max-windows 5 --shape seq=128
  q $m-new 40 "$CLI" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 64 --duration 1s --warmup 0.3s --max-windows 5 --shape seq=128
done
q distilbert-timed 60 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --engine cuda --precision fp16 -b 64 --duration 1s --warmup 0.3s --max-windows 5 --shape seq=128 --timed-tactics
q distilbert-profile 40 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --engine cuda --precision fp16 -b 64 --profile --duration 0.5s --warmup 0.2s --max-windows 3 --shape seq=128 --json "$R/distilbert-profile.json"
pack
