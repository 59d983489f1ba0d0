#!/usr/bin/env bash
# Session 20, call 3: the half-precision GELU pass (erfc by a Chebyshev fit instead of erff; main at .device/rev) against
# 66117ea (flat overlay "base"), and an experiment: main plus __launch_bounds__(128, 4) on the attention kernel at heads up to
# 64 (f7c03d0, flat overlay "old" slot, "lb"): the MLP and model GPU classes, then three GELU models at b=1 and 64 with
# the three builds (twice, alternating), DistilBERT and ViT-S with --timed-tactics, and DistilBERT's layer profile.
source bench/device/call-lib.sh 360
unpack tests base old || { pack; exit 1; }
MODELS=distilbert,vit_small_patch16_224,convnext_tiny
timeout "$(lim 120)" python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R" --models $MODELS --jobs 3 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="MlpGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=90 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports; t "exports: $(grep -c ': ok' "$R/exports.log") ok"
for round in 1 2; do
  for m in ${MODELS//,/ }; do
    shape=$(python3 -c "import json; print(' '.join(json.load(open('$R/export-$m.json')).get('shape_args', [])))" 2>/dev/null)
    for which in base new lb; do
      exe=$CLI; [ $which = base ] && exe=$BASE; [ $which = lb ] && exe=$OLD
      q $m-$which-$round 30 "$exe" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 0.6s --warmup 0.2s --max-windows 4 $shape
    done
  done
done
for m in distilbert vit_small_patch16_224; do
  shape=$(python3 -c "import json; print(' '.join(json.load(open('$R/export-$m.json')).get('shape_args', [])))" 2>/dev/null)
  q $m-new-timed 40 "$CLI" bench "$WORK/exports/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 0.6s --warmup 0.2s --max-windows 4 --timed-tactics $shape
done
q distilbert-profile 30 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --engine cuda --precision fp16 -b 64 --profile --duration 0.5s --warmup 0.2s --max-windows 3 --shape seq=128 --json "$R/distilbert-profile.json"
pack
