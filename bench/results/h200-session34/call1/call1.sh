#!/usr/bin/env bash
# Session 34, call 1: issue 19's bar with session 33's defaults against this session's two levers: the chained block end
# (BATCHWISE_INT8_CHAIN=on: ResNet-50's three 56x56 block ends compute the next block's 1x1 reduction in their kernel)
# and up to 16 warps a block where one block fits an SM (BATCHWISE_INT8_POINTWISE_WARPS=16: the six 14x14 ends, 0.091 ms
# each at 1.3 TB/s on the H100 in session 33, get 14 warps instead of 8). ResNet-50 int8 symmetric at b=256, each lever
# alone and both, the default and both again, fp16 twice; compare (both on)
# against the fp32 model over 1,000 seeded inputs; b=1 int8 (both on) against fp16; a profile; the GPU test.
source bench/device/call-lib.sh 490
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1 b=$2; shift 2; q "$tag" 45 env BATCHWISE_INT8=on "$@" "$CLI" bench "$M" --engine cuda --precision fp16 -b "$b" --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b "$2" --duration 400ms --json "$R/$1.json"; }
BOTH="BATCHWISE_INT8_CHAIN=on BATCHWISE_INT8_POINTWISE_WARPS=16"
i8 r50qs-256-1 256; i8 r50qs-chain-256-1 256 BATCHWISE_INT8_CHAIN=on; i8 r50qs-warps-256-1 256 BATCHWISE_INT8_POINTWISE_WARPS=16; i8 r50qs-both-256-1 256 $BOTH; f16 r50-256-1 256
i8 r50qs-256-2 256; i8 r50qs-both-256-2 256 $BOTH; f16 r50-256-2 256
q r50qs-both-cmp1000 60 env BATCHWISE_INT8=on $BOTH "$CLI" compare zoo:resnet50 "$M" --engines cuda,cuda --precision fp16 -b 1000
i8 r50qs-both-1 1 $BOTH; f16 r50-1 1
q r50qs-both-prof 45 env BATCHWISE_INT8=on $BOTH "$CLI" bench "$M" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/r50qs-both-prof.json"
CLASSES="Int8PointwiseGpuTests" LIMITS="Int8PointwiseGpuTests=120" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
