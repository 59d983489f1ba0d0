#!/usr/bin/env bash
# Session 40, call 2 (after call 1's explain study; publish of 45b1deb, .device2/cli-base.tar.xz of ff582fc packed flat):
# session 39's h200-session39/next/b1-ab.sh and profiles.sh in one call, in the order of what they decide.
# (1) ResNet-50 fp16 at b=1 (issue 16's bar 4,000 img/s), alternating twice: base ff582fc (56 kernels), new (55: the
#     one-row classifier writes the float32 logits), STEM_SPLITS 2 and 4; per-step profiles at 1, 2, 4 splits.
# (2) The GPU classes session 39 changed: StemPoolGpuTests (the splits against ONNX Runtime), ModelGpuTests (the b=1
#     logits, NVML's clock sample), KernelCaseGpuTests (the depthwise write).
# (3) BERT fp16 b=32..256 for 1 s a point (the clocks); RegNetX-016 fp32 explained at b=1..8 on fresh ceilings (grouped
#     tables by side) beside a profile at b=2, 4; BERT's per-layer profiles at 32 and 256.
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
cp .device2/cli-base.tar.xz .device/ 2>/dev/null
unpack tests base || unpack tests || { pack; exit 1; }
b1() { q "$1" 40 "${@:3}" "$2" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 600ms --json "$R/$1.json"; }
for i in 1 2; do
  [ -n "${BASE:-}" ] && b1 base-$i "$BASE"
  b1 new-$i "$CLI"
  b1 split2-$i "$CLI" env BATCHWISE_STEM_SPLITS=2
  b1 split4-$i "$CLI" env BATCHWISE_STEM_SPLITS=4
done
for s in 1 2 4; do
  q prof-split$s 40 env BATCHWISE_STEM_SPLITS=$s "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --profile --json "$R/prof-split$s.json"
done
CLASSES="StemPoolGpuTests ModelGpuTests KernelCaseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 120 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q bert-long 90 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,64,128,256 --duration 1s --json "$R/bert-long.json"
timeout "$(lim 90)" python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models regnetx_016 --jobs 1 > "$R/exports.log" 2>&1
RX=$WORK/exports/regnetx_016/model.onnx
if [ -f "$RX" ]; then
  # On call 1's ceilings where the machine kept them (explain-study-call.sh leaves them in $WORK/study-cache).
  [ -d "$WORK/study-cache" ] && export BATCHWISE_CACHE_DIR=$WORK/study-cache
  q rx-explain 120 "$CLI" explain "$RX" --engine cuda -b 1,2,4,8 --duration 300ms --json "$R/rx-explain.json"
  q rx-prof 40 "$CLI" bench "$RX" --engine cuda -b 2,4 --duration 300ms --profile --json "$R/rx-prof.json"
fi
q bert-prof 60 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,256 --duration 300ms --profile --json "$R/bert-prof.json"
pack
