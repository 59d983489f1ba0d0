#!/usr/bin/env bash
# The explain model's honesty on ONNX Runtime (CPU): for every zoo model (small sizes, so a sweep takes seconds),
# `batchwise explain` with a short measured sweep; then one markdown table of predicted against measured throughput
# at the smallest and largest batch and the knees.
#   bench/explain-cpu.sh [OUT_DIR]            builds the CLI with dotnet (needs dotnet and python3)
#   CLI=/path/to/Batchwise.Cli bench/explain-cpu.sh OUT_DIR
#                                             uses a published CLI instead: no dotnet needed (e.g. on the GPU machine)
# Writes OUT_DIR/*.json, *.txt (each explain's output), calibration.txt, machine.txt and table.md. The ceilings are
# measured afresh into OUT_DIR/cache. Env: THREADS (ONNX Runtime intra-op threads; default: the engine's, one per
# core), MODEL_TIMEOUT (seconds per model, default 30: with the calibration's 40 the whole study stays under 4
# minutes; raise it on a small machine). On a shared machine run it under `nice -n -15` and read the load column.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/batchwise-explain-cpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [[ -n ${CLI:-} ]]; then
  [[ -x $CLI ]] || { echo "CLI=$CLI is not an executable (the published Batchwise.Cli)" >&2; exit 2; }
  cli=("$CLI")
else
  dotnet build src/Batchwise.Cli -c Release -v q -nologo >/dev/null
  cli=(dotnet src/Batchwise.Cli/bin/Release/net10.0/Batchwise.Cli.dll)
fi
export BATCHWISE_CACHE_DIR="$out/cache"
threads=()
[[ -n ${THREADS:-} ]] && threads=(--threads "$THREADS")
model_timeout=${MODEL_TIMEOUT:-30}
start=$(date +%s)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "logical cores: $(nproc)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "threads: ${THREADS:-engine default}"
  echo "cli: ${cli[*]}"
} >"$out/machine.txt"
timeout 40 "${cli[@]}" explain zoo:mlp --no-measure --recalibrate -v "${threads[@]}" >"$out/calibration.txt" 2>&1 \
  || echo "calibration failed or timed out: see $out/calibration.txt" >&2
run() {
  local name=$1; shift
  echo "$name: load $(cut -d' ' -f1-3 /proc/loadavg), $(( $(date +%s) - start )) s so far" >&2
  timeout "$model_timeout" "${cli[@]}" explain "$@" "${threads[@]}" --duration 1.5 --json "$out/$name.json" >"$out/$name.txt" 2>&1 \
    || { echo "$name failed or passed ${model_timeout} s: see $out/$name.txt" >&2; rm -f "$out/$name.json"; }
}
run mlp zoo:mlp --batch-sizes 1,2,4,8,16,32,64
run resnet18 "zoo:resnet18?size=112" --batch-sizes 1,2,4,8,16
run resnet50 "zoo:resnet50?size=112" --batch-sizes 1,2,4,8,16
run mobilenetv2 "zoo:mobilenetv2?size=112" --batch-sizes 1,2,4,8,16,32
run yolov8n "zoo:yolov8n?size=320" --batch-sizes 1,2,4,8
run bert "zoo:bert?seq=64&layers=2" --batch-sizes 1,2,4,8,16
echo "total: $(( $(date +%s) - start )) s" >>"$out/machine.txt"
python3 bench/explain-table.py "$out" mlp resnet18 resnet50 mobilenetv2 yolov8n bert >"$out/table.md"
cat "$out/table.md"
