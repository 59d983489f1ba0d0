#!/usr/bin/env bash
# Before/after ONNX Runtime CPU speed of each optimize transform on resnet50 and yolov8n at batch 1 and 16.
# Writes one JSON report per run to $OUT (default bench/results/optimize-cpu/). Usage: bench/optimize/run-cpu.sh
set -u
BW=${BW:-src/Batchwise.Cli/bin/Release/net10.0/Batchwise.Cli}
OUT=${OUT:-bench/results/optimize-cpu}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-2}
THREADS=${THREADS:-1}
mkdir -p "$OUT" /tmp/bw-optimize-bench
run() { # name model args...
  local name=$1 model=$2; shift 2
  echo "== $name: $model $*"
  "$BW" optimize "$model" -o "/tmp/bw-optimize-bench/$name.onnx" --batch-sizes 1,16 --duration "$SECONDS_PER_POINT" --threads "$THREADS" --json "$OUT/$name.json" "$@" 2>&1 | grep -vE '^\S+\.\.\.$'
}
R50='zoo:resnet50?size=160'
YOLO='zoo:yolov8n?size=320'
run resnet50-cleanup "$R50"
run resnet50-fp16 "$R50" --fp16
run resnet50-int8 "$R50" --int8 --calibration random:8
run resnet50-prune25 "$R50" --prune 0.25
run resnet50-size128 "$R50" --input-size 128x128
run yolov8n-cleanup "$YOLO"
run yolov8n-fp16 "$YOLO" --fp16
run yolov8n-int8 "$YOLO" --int8 --calibration random:8
run yolov8n-prune25 "$YOLO" --prune 0.25
run yolov8n-size256 "$YOLO" --input-size 256x256
rm -rf /tmp/bw-optimize-bench
