#!/usr/bin/env bash
# Session 35, call 4 — PREPARED, NOT RUN (no device time left to start a machine; for the next session's first call,
# publish of HEAD): the stem's cheaper epilogue and QDQ roundings (81e1b92) and the opt-in 32-pixel tiles of the int8
# 1x1 block ends (bc4b8da: BATCHWISE_INT8_POINTWISE_ROWS=32, one warp a tile; 304b795: =pairs, two warps a tile).
# ResNet-50 int8 symmetric at b=256: the defaults against 32 and pairs, alternating, fp16 twice; their per-layer profiles
# (the ends against call 1's 0.080 ms at 14x14, 0.105-0.108 at 28x28, 0.179 at 56x56); Int8PointwiseGpuTests (the
# 32-pixel theory: the same bytes, no local memory) and StemPoolGpuTests.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1; shift; q "$tag" 60 env BATCHWISE_INT8=on "$@" "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/$1.json"; }
prof() { local tag=$1; shift; q "$tag" 50 env BATCHWISE_INT8=on "$@" "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --profile --json "$R/$tag.json"; }
i8 warm
i8 r50qs-256-1; i8 r50qs-pairs-256-1 BATCHWISE_INT8_POINTWISE_ROWS=pairs; i8 r50qs-rows32-256-1 BATCHWISE_INT8_POINTWISE_ROWS=32; f16 r50-256-1
i8 r50qs-256-2; i8 r50qs-pairs-256-2 BATCHWISE_INT8_POINTWISE_ROWS=pairs; i8 r50qs-rows32-256-2 BATCHWISE_INT8_POINTWISE_ROWS=32; f16 r50-256-2
prof r50qs-pairs-prof BATCHWISE_INT8_POINTWISE_ROWS=pairs; prof r50qs-rows32-prof BATCHWISE_INT8_POINTWISE_ROWS=32
CLASSES="Int8PointwiseGpuTests StemPoolGpuTests" LIMITS="Int8PointwiseGpuTests=220 StemPoolGpuTests=60" TESTS=$TESTS OUT=$R/gpu LIMIT=220 DEADLINE=$(( $(left) - 5 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
