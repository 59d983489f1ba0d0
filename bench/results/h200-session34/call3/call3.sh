#!/usr/bin/env bash
# Session 34, call 3 — PREPARED, NOT RUN (the session's device time went on failed starts and calls 1-2). Issue 19's
# table in one run on its own machine (an H200) with session 34's defaults (the chained 56x56 block end with sixteen
# warps, sixteen warps for the 256-channel 1x1 ends): ResNet-50 int8 symmetric at b=256 against session 33's form
# (BATCHWISE_INT8_CHAIN=off BATCHWISE_INT8_POINTWISE_WARPS=8) and against the chain down to eight warps (=any),
# alternating, fp16 twice; b=1 int8 against fp16; 1,000 seeded inputs against the fp32 model; MobileNetV2 int8
# against fp16 at b=64, BERT at b=32 (YOLOv8n's run does not fit: session 30's call did it); Int8PointwiseGpuTests (the chain's bytes against its own kernels, registers).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1 model=$2 b=$3; shift 3; q "$tag" 60 env BATCHWISE_INT8=on "$@" "$CLI" bench "$model" --engine cuda --precision fp16 -b "$b" --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench "$2" --engine cuda --precision fp16 -b "$3" --duration 400ms --json "$R/$1.json"; }
OLD="BATCHWISE_INT8_CHAIN=off BATCHWISE_INT8_POINTWISE_WARPS=8"
i8 warm "$M" 256   # the first plan's int8 graph search (43 s cold on the H100) lands in the cache here
i8 r50qs-256-1 "$M" 256; i8 r50qs-old-256-1 "$M" 256 $OLD; i8 r50qs-any-256-1 "$M" 256 BATCHWISE_INT8_CHAIN=any; f16 r50-256-1 zoo:resnet50 256
i8 r50qs-256-2 "$M" 256; i8 r50qs-old-256-2 "$M" 256 $OLD; f16 r50-256-2 zoo:resnet50 256
i8 r50qs-1 "$M" 1; f16 r50-1 zoo:resnet50 1
q r50qs-cmp1000 60 env BATCHWISE_INT8=on "$CLI" compare zoo:resnet50 "$M" --engines cuda,cuda --precision fp16 -b 1000
q m2q-opt 20 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
i8 m2q-64 "$WORK/m2q.onnx" 64; f16 m2-64 zoo:mobilenetv2 64
q bq-opt 30 "$CLI" optimize zoo:bert --int8 --calibration random:2 --no-verify -o "$WORK/bq.onnx"
i8 bq-32 "$WORK/bq.onnx" 32; f16 bert-32 zoo:bert 32
CLASSES="Int8PointwiseGpuTests" LIMITS="Int8PointwiseGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=200 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
