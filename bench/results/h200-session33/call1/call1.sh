#!/usr/bin/env bash
# Session 33, call 1 — PREPARED, NOT RUN (no device machine was lent in session 33). Issue 19's ResNet-50 int8 at b=256
# (bars: >= 65,000 img/s and >= 1.6x fp16 in one run; session 30: 62,329 symmetric, fp16 46,260) with session 33's two
# changes, both off by default until this call measures them, on a publish of main at or after b29a24d:
# - BATCHWISE_INT8_POINTWISE_KERNEL=warp (953afa4): the 1x1 block ends on a kernel where every warp is its own
#   pipeline (no block-wide barrier in its loop), two and three tiles in flight a warp;
# - BATCHWISE_INT8_PROJECTION=on (b29a24d): the first block's 64 -> 256 shortcut computed inside its block end's kernel
#   (one kernel and 410 MB of traffic fewer at b=256).
# Alternating with the default in one process each and one warm timing cache; fp16 in the same call for the ratio;
# profiles of all three; Int8PointwiseGpuTests (the warp kernel against the block kernel, the shortcut byte for byte,
# registers and local memory of both new forms); both together (299d79f). About 480 s on an H200.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q r50qs-opt 25 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
b() { # TAG ENV...: ResNet-50 int8 (symmetric) at b=256 under the given environment
  local tag=$1; shift
  q "$tag" 40 env BATCHWISE_INT8=on "$@" "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/$tag.json"
}
b r50qs-warmup BATCHWISE_PDL=off # builds the timing cache the runs below share
b r50qs-1 BATCHWISE_PDL=off
b r50qs-w-1 BATCHWISE_INT8_POINTWISE_KERNEL=warp
b r50qs-p-1 BATCHWISE_INT8_PROJECTION=on
b r50qs-w3-1 BATCHWISE_INT8_POINTWISE_KERNEL=warp BATCHWISE_INT8_POINTWISE_STAGES=3
b r50qs-wp-1 BATCHWISE_INT8_POINTWISE_KERNEL=warp BATCHWISE_INT8_PROJECTION=on
b r50qs-2 BATCHWISE_PDL=off
b r50qs-w-2 BATCHWISE_INT8_POINTWISE_KERNEL=warp
b r50qs-p-2 BATCHWISE_INT8_PROJECTION=on
q r50-fp16 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/r50-fp16.json"
for v in "base" "w BATCHWISE_INT8_POINTWISE_KERNEL=warp" "p BATCHWISE_INT8_PROJECTION=on"; do
  set -- $v; tag=$1; shift
  q r50qs-prof-$tag 40 env BATCHWISE_INT8=on "$@" "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/r50qs-prof-$tag.json"
done
q r50qs-cmp-p 40 env BATCHWISE_INT8=on BATCHWISE_INT8_PROJECTION=on "$CLI" compare "$M" --engines ort,cuda --precision fp16 -b 32
CLASSES="Int8PointwiseGpuTests" LIMITS="Int8PointwiseGpuTests=150" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
