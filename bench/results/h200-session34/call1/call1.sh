#!/usr/bin/env bash
# Session 34, call 1: issue 19's bar with session 33's defaults and this session's chained block end
# (BATCHWISE_INT8_CHAIN=on: ResNet-50's three 56x56 block ends compute the next block's 1x1 reduction in their kernel):
# ResNet-50 int8 symmetric at b=256, default and chain alternating twice, fp16 twice; compare (chain on) against ORT;
# b=1 int8 (chain on and off) against fp16; per-layer profiles of int8 with the chain at b=256 and fp16 at b=1; the chain's
# GPU test (Int8PointwiseGpuTests).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1 b=$2; shift 2; q "$tag" 45 env BATCHWISE_INT8=on "$@" "$CLI" bench "$M" --engine cuda --precision fp16 -b "$b" --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b "$2" --duration 400ms --json "$R/$1.json"; }
i8 r50qs-256-1 256; i8 r50qs-chain-256-1 256 BATCHWISE_INT8_CHAIN=on; f16 r50-256-1 256
i8 r50qs-256-2 256; i8 r50qs-chain-256-2 256 BATCHWISE_INT8_CHAIN=on; f16 r50-256-2 256
q r50qs-chain-cmp 40 env BATCHWISE_INT8=on BATCHWISE_INT8_CHAIN=on "$CLI" compare "$M" --engines ort,cuda --precision fp16 -b 32
i8 r50qs-1 1; i8 r50qs-chain-1 1 BATCHWISE_INT8_CHAIN=on; f16 r50-1 1
q r50qs-chain-prof 45 env BATCHWISE_INT8=on BATCHWISE_INT8_CHAIN=on "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/r50qs-chain-prof.json"
q r50-prof-1 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --profile --duration 200ms --json "$R/r50-prof-1.json"
CLASSES="Int8PointwiseGpuTests" LIMITS="Int8PointwiseGpuTests=120" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
