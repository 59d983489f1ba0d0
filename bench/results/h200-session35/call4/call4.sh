#!/usr/bin/env bash
# Session 35, call 4 — PREPARED, NOT RUN (no device time left to start a machine): the stem's cheaper epilogue and QDQ roundings (81e1b92; publish of cd666a1) on the card that came. ResNet-50 int8
# symmetric and fp16 at b=256 alternating (two each), StemPoolGpuTests (the stem kernel against the float layers on the GPU).
source bench/device/call-lib.sh 190
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1; shift; q "$tag" 60 env BATCHWISE_INT8=on "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --duration 400ms "$@" --json "$R/$tag.json"; }
f16() { local tag=$1; shift; q "$tag" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms "$@" --json "$R/$tag.json"; }
i8 warm
i8 r50qs-256-1; f16 r50-256-1; i8 r50qs-256-2; f16 r50-256-2
CLASSES="StemPoolGpuTests" LIMITS="StemPoolGpuTests=50" TESTS=$TESTS OUT=$R/gpu LIMIT=50 DEADLINE=$(( $(left) - 5 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
