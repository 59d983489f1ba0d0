#!/usr/bin/env bash
# Session 20, call 6 (main at .device/rev: the sibling products' bias check shared with TakeBias, no change in behaviour):
# the attention and MLP GPU classes, and DistilBERT's compare against ONNX Runtime, on the final engine code.
source bench/device/call-lib.sh 200
unpack tests || { pack; exit 1; }
timeout 100 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R" --models distilbert --jobs 1 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="AttentionGpuTests MlpGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=100 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports
timeout "$(lim 40)" "$CLI" compare "$WORK/exports/distilbert/model.onnx" --engines ort,cuda --precision fp16 -b 4 --shape seq=128 > "$R/compare-distilbert.txt" 2>&1
t "compare distilbert exit $? $(grep -E 'last_hidden_state' "$R/compare-distilbert.txt" | tr -s ' ' | cut -c1-200)"
q distilbert 30 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --engine cuda --precision fp16 -b 64 --duration 0.6s --warmup 0.2s --max-windows 4 --shape seq=128
pack
