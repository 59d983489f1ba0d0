#!/usr/bin/env bash
# Session 20, call 2: the attention kernel restructured for short key sequences (main at .device/rev) against 4e96de2
# (call 1's build, flat overlay "base"): the attention GPU tests (throughput and registers), the model and MLP classes,
# then five attention models at b=1 and 64 with both builds, and DistilBERT's layer profile.
source bench/device/call-lib.sh 480
unpack tests base || { pack; exit 1; }
MODELS=distilbert,bert,gpt2,vit-hf,vit_small_patch16_224
timeout "$(lim 120)" python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R" --models $MODELS --jobs 5 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="AttentionGpuTests ModelGpuTests MlpGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=150 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
grep -h "attention throughput\|attention kernel" "$R"/gpu/*.log 2>/dev/null | sort -u >> "$R/log.txt"
wait $exports; t "exports: $(grep -c ': ok' "$R/exports.log") ok"
for m in ${MODELS//,/ }; do
  shape=$(python3 -c "import json,sys; print(' '.join(json.load(open('$R/export-$m.json')).get('shape_args', [])))" 2>/dev/null)
  for which in base new; do
    exe=$CLI; [ $which = base ] && exe=$BASE
    q $m-$which 40 "$exe" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.3s --max-windows 5 $shape
  done
done
q distilbert-profile 40 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --engine cuda --precision fp16 -b 64 --profile --duration 0.5s --warmup 0.2s --max-windows 3 --shape seq=128 --json "$R/distilbert-profile.json"
pack
