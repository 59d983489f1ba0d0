#!/usr/bin/env bash
# Verifies an engine against ONNX Runtime on the CPU and against ONNX's expected outputs (issue 3, item 7):
#   1. every zoo model through `batchwise compare --engines ort,ENGINE` at batch 1 and 8;
#   2. ONNX's backend node tests for the CUDA engine's operator list through `batchwise conformance`;
#   3. torchvision exports (bench/peers/export_torchvision.py -o DIR) through compare and conformance, if given.
# Every command's JSON and output land in OUT; SUMMARY.txt lists each step's exit code. Exit 0 only if all passed.
#
#   bench/verify_engine.sh [-e cuda] [-o OUT] [-n NODE_TEST_DIR] [-t TORCHVISION_DIR] [-r RTOL] [-a ATOL]
#   BATCHWISE=/path/to/batchwise bench/verify_engine.sh ...   (default: dotnet run --project src/Batchwise.Cli -c Release --)
set -uo pipefail
cd "$(dirname "$0")/.."

engine=cuda out="bench/results/verify-$(date -u +%Y%m%d-%H%M%S)" nodes="" torchvision="" rtol=1e-4 atol=1e-5
while getopts "e:o:n:t:r:a:h" opt; do
  case $opt in
    e) engine=$OPTARG ;; o) out=$OPTARG ;; n) nodes=$OPTARG ;; t) torchvision=$OPTARG ;;
    r) rtol=$OPTARG ;; a) atol=$OPTARG ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done

if [[ -n "${BATCHWISE:-}" ]]; then
  bw=("$BATCHWISE")
else
  dotnet build src/Batchwise.Cli -c Release -v quiet -nologo >/dev/null || { echo "build failed" >&2; exit 2; }
  bw=(dotnet run --no-build --project src/Batchwise.Cli -c Release --)
fi

mkdir -p "$out"
summary="$out/SUMMARY.txt"
: >"$summary"
failed=0

step() { # step NAME ARGS...: runs batchwise ARGS, keeps its output, records the exit code
  local name=$1; shift
  echo "== $name: batchwise $*"
  "${bw[@]}" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  printf '%-40s exit %s\n' "$name" "$rc" | tee -a "$summary"
  [[ $rc -eq 0 ]] || failed=1
}

for model in mlp resnet18 resnet50 mobilenetv2 yolov8n bert; do
  for batch in 1 8; do
    step "compare-$model-b$batch" compare "zoo:$model" --engines "ort,$engine" -b "$batch" \
      --rtol "$rtol" --atol "$atol" --json "$out/compare-$model-b$batch.json"
  done
done

node_args=()
[[ -n "$nodes" ]] && node_args=("$nodes")
step conformance-cuda-issue-3 conformance "${node_args[@]}" --engine "$engine" --ops cuda-issue-3 \
  --json "$out/conformance-cuda-issue-3.json"

if [[ -n "$torchvision" ]]; then
  for model in "$torchvision"/test_*/model.onnx; do
    name=$(basename "$(dirname "$model")")
    step "compare-$name-b8" compare "$model" --engines "ort,$engine" -b 8 --rtol "$rtol" --atol "$atol" \
      --json "$out/compare-$name-b8.json"
  done
  # Against PyTorch's own fp32 output: a looser bound, since two libraries' convolutions round differently.
  step conformance-torchvision conformance "$torchvision" --engine "$engine" --rtol 1e-3 --atol 1e-4 \
    --json "$out/conformance-torchvision.json"
fi

echo "results in $out"
cat "$summary"
exit $failed
