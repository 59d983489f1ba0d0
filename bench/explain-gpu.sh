#!/usr/bin/env bash
# The explain model on the GPU (the cuda engine): the GPU's ceilings from the cuBLASLt / copy / launch probe, then
# `batchwise explain --engine cuda` with a short measured sweep per model and precision, and one markdown table of
# predicted against measured throughput (bench/explain-table.py).
#   CLI=/tmp/batchwise-device/cli/Batchwise.Cli OUT=/some/dir bench/explain-gpu.sh
# Needs only the published CLI and python3 (no dotnet). Writes OUT/ceilings.txt (devices --ceilings), ceilings.json,
# each explain's NAME.txt / NAME.json, resnet50-fp32.html (the report), machine.txt and table.md. The ceilings are
# measured afresh into OUT/cache. About 4-5 minutes; each explain is cut off after MODEL_TIMEOUT (default 60 s).
set -uo pipefail
cd "$(dirname "$0")/.."
CLI=${CLI:-/tmp/batchwise-device/cli/Batchwise.Cli}
OUT=${OUT:-/tmp/batchwise-explain-gpu}
[[ -x $CLI ]] || { echo "CLI=$CLI is not an executable (the published Batchwise.Cli)" >&2; exit 2; }
mkdir -p "$OUT"
export BATCHWISE_CACHE_DIR="$OUT/cache"
model_timeout=${MODEL_TIMEOUT:-60}
start=$(date +%s)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) logical cores"
  echo "cli: $CLI"
} >"$OUT/machine.txt"

# The ceilings: measured once (about 10 s), then read from OUT/cache by every explain below.
timeout 120 "$CLI" devices --ceilings --recalibrate -v >"$OUT/ceilings.txt" 2>&1; echo "devices --ceilings exit $?" >>"$OUT/ceilings.txt"
timeout 30 "$CLI" devices --ceilings --json - >"$OUT/ceilings.json" 2>>"$OUT/ceilings.txt"

run() {
  local name=$1; shift
  echo "$name: $(( $(date +%s) - start )) s so far" >&2
  timeout "$model_timeout" "$CLI" explain "$@" --engine cuda --duration 1 --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1
  local code=$?
  echo "exit $code" >>"$OUT/$name.txt"
  [[ $code == 0 ]] || { echo "$name failed ($code): see $OUT/$name.txt" >&2; rm -f "$OUT/$name.json"; }
  return $code
}
run resnet50-fp32 zoo:resnet50 --batch-sizes 1,2,4,8,16,32,64,128,256 --report "$OUT/resnet50-fp32.html"
run resnet50-tf32 zoo:resnet50 --batch-sizes 1,8,64,256 --tf32
run resnet50-no-graph zoo:resnet50 --batch-sizes 1,8,64,256 --no-cuda-graph
run resnet50-1600 "zoo:resnet50?size=1600x1008" --batch-sizes 1,2,4,8,16
run resnet18-fp32 zoo:resnet18 --batch-sizes 1,8,64,256
run mobilenetv2-fp32 zoo:mobilenetv2 --batch-sizes 1,8,64,256
run yolov8n-fp32 "zoo:yolov8n?size=640" --batch-sizes 1,8,32
run bert-fp32 zoo:bert --batch-sizes 1,8,32
run mlp-fp32 zoo:mlp --batch-sizes 1,64,1024,8192
# fp16 (the engine's float16 path on tensor cores): measured; where the engine refuses a model in fp16, the prediction alone.
fp16() { run "$1" "$2" --batch-sizes "$3" --precision fp16 || run "$1" "$2" --batch-sizes "$3" --precision fp16 --no-measure; }
fp16 resnet50-fp16 zoo:resnet50 1,8,64,256
fp16 mobilenetv2-fp16 zoo:mobilenetv2 1,8,64,256
fp16 resnet50-1600-fp16 "zoo:resnet50?size=1600x1008" 1,2,4,8,16
echo "total: $(( $(date +%s) - start )) s" >>"$OUT/machine.txt"
python3 bench/explain-table.py "$OUT" resnet50-fp32 resnet50-tf32 resnet50-no-graph resnet50-1600 resnet18-fp32 mobilenetv2-fp32 \
  yolov8n-fp32 bert-fp32 mlp-fp32 resnet50-fp16 mobilenetv2-fp16 resnet50-1600-fp16 >"$OUT/table.md"
cat "$OUT/ceilings.txt" "$OUT/table.md"
