#!/usr/bin/env bash
# Session 37, call 3: issue 19's table in one run on the final engine (warpgroup MMA on by default, every kernel built
# for sm_90a), as a user types it: ResNet-50 int8 (the QDQ model `optimize --int8 --int8-activations symmetric` writes,
# at `--precision int8`) against fp16 at b=256 alternating three times, b=1, against fp32 over 1,000 seeded inputs,
# `optimize --int8`'s QDQ model on ort against cuda; MobileNetV2, YOLOv8n and BERT int8 against fp16. Then GPU test
# classes on the sm_90a build in the time left.
source bench/device/call-lib.sh 575
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1 model=$2 b=$3 l=${4:-60}; q "$tag" "$l" "$CLI" bench "$model" --engine cuda --precision int8 -b "$b" --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench "$2" --engine cuda --precision fp16 -b "$3" --duration 400ms --json "$R/$1.json"; }
i8 warm "$M" 256
i8 r50qs-256-1 "$M" 256; f16 r50-256-1 zoo:resnet50 256
i8 r50qs-256-2 "$M" 256; f16 r50-256-2 zoo:resnet50 256
i8 r50qs-256-3 "$M" 256; f16 r50-256-3 zoo:resnet50 256
i8 r50qs-1 "$M" 1; f16 r50-1 zoo:resnet50 1
q r50qs-cmp1000 60 "$CLI" compare zoo:resnet50 "$M" --engines cuda,cuda --precision int8 -b 1000 --json "$R/r50qs-cmp1000.json"
q r50q-opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --no-verify -o "$WORK/r50q.onnx"
q r50q-ort-cuda 120 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision int8 -b 1000 --json "$R/r50q-ort-cuda.json"
q m2q-opt 20 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
i8 m2q-64 "$WORK/m2q.onnx" 64 50; f16 m2-64 zoo:mobilenetv2 64
q y8qs-opt 40 "$CLI" optimize zoo:yolov8n --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$WORK/y8qs.onnx"
i8 y8qs-64 "$WORK/y8qs.onnx" 64 60; f16 y8-64 zoo:yolov8n 64
q bq-opt 30 "$CLI" optimize zoo:bert --int8 --calibration random:2 --no-verify -o "$WORK/bq.onnx"
i8 bq-32 "$WORK/bq.onnx" 32 50; f16 bert-32 zoo:bert 32
t "GPU tests with $(left) s left"
CLASSES="ModelGpuTests StemPoolGpuTests Int8ResidualFusionGpuTests QuantizedModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 10 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
