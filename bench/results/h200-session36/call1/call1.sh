#!/usr/bin/env bash
# Session 36, call 1 (second device call of the session; the first ran session 35's prepared call 4, recorded under
# h200-session35/call4): issue 19's table in one run, as a user types it — the QDQ model at `--precision int8` (670a7c1:
# a model already quantized runs with its own scales, no BATCHWISE_INT8 switch), fp16 alternating; b=1; ResNet-50 int8
# against fp32 over 1,000 seeded inputs; `optimize --int8`'s QDQ model on ort against cuda (top-1); MobileNetV2, YOLOv8n
# and BERT int8 against fp16; fp16's per-layer profile beside int8's. Then the explain study on the zoo with what is left.
source bench/device/call-lib.sh 565
unpack || { pack; exit 1; }
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
q r50-prof 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --profile --json "$R/r50-prof.json"
t "explain study with $(left) s left"
if [ "$(left)" -gt 90 ]; then
  CLI=$CLI OUT=$R/explain BUDGET=$(( $(left) - 25 )) THIN=1 bash bench/explain-gpu.sh > "$R/explain-run.txt" 2>&1
  t "explain exit $?; $(grep -c . "$R/explain/table.md" 2>/dev/null) table lines"
fi
pack
