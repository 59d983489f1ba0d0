#!/usr/bin/env bash
# PREPARED, NOT RUN (session 39 had no device; publish of its final commit, and .device/cli-base.tar.xz of ff582fc —
# session 38's final — every Batchwise*.dll of its publish, packed FLAT: `cd /tmp/ff582fc/cli && tar -cJf .device/cli-base.tar.xz Batchwise*.dll`):
# ResNet-50 fp16 at b=1 (issue 16's bar: 4,000 img/s; 3,132-3,159 on session 38's H100), alternating twice:
#   base    ff582fc (56 kernels: the logits converted by a kernel of their own);
#   new     this session's default (55: the one-row classifier writes the float32 logits itself);
#   split2  + BATCHWISE_STEM_SPLITS=2 (the stem's 56 bands x 2 channel halves: 112 blocks for 132 SMs);
#   split4  + BATCHWISE_STEM_SPLITS=4 (224 blocks, 16 channels each);
# then StemPoolGpuTests (the splits against ONNX Runtime and the stem's time by splits) and a per-step profile of each.
source bench/device/call-lib.sh 420
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
CLASSES="StemPoolGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
