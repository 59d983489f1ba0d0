#!/usr/bin/env bash
# The explain error study on the GPU (issue 16, item 3): the GPU's ceilings and per-layer rate tables, then
# `batchwise explain --engine cuda` in fp16 and fp32 on the zoo (resnet50, resnet18, mobilenetv2, yolov8n, bert, mlp)
# and on peer exports, each at b=1..256, and one markdown table (bench/explain-table.py): the error at every batch, the
# knees, and pass/fail against ±30% at every batch and the knee within one batch-size step.
#   CLI=/path/to/Batchwise.Cli OUT=/some/dir [WORLD_EXPORTS=dir] bench/explain-gpu.sh
# WORLD_EXPORTS: a folder of NAME/model.onnx as `bench/peers/world.py --export-only --work DIR` writes them; the peers run
# are PEERS (default resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016); a missing one is a
# row saying so. Needs only the published CLI and python3 (no dotnet). Bounded: the whole run, the ceilings included, stops
# starting models after BUDGET seconds (default 480, so one device call of 540 s holds it with room for what wraps it), and
# each explain is cut off after MODEL_TIMEOUT (default 45 s, less when the budget is nearly spent); whatever finished is in
# the table (OUT/table.md), rendered again after each model. ONLY=bert,mlp runs those models alone. BATCHES (default 1,2,4,...,256; THIN=1 for 1,4,16,64,256) and
# DURATION (default 300ms per batch size) trade time for points. On an H200 the default took 191 s (session 11: ceilings
# 29 s, ~7 s a run of 9 batches) and THIN 129 s (session 13: ceilings 33 s, ~4.3 s a run); the stride-2 grouped tables add
# a few seconds to the ceilings, so expect ~210 s for the default, far inside the budget. Writes OUT/machine.txt, ceilings.txt / ceilings.json (measured afresh into OUT/cache; the cache files kept in OUT/ceilings-cache for replays with `explain --ceilings-file`), NAME.txt / NAME.json.
set -uo pipefail
cd "$(dirname "$0")/.."
CLI=${CLI:-/tmp/batchwise-device/cli/Batchwise.Cli}
OUT=${OUT:-/tmp/batchwise-explain-gpu}
[[ -x $CLI ]] || { echo "CLI=$CLI is not an executable (the published Batchwise.Cli)" >&2; exit 2; }
mkdir -p "$OUT"
export BATCHWISE_CACHE_DIR="$OUT/cache"
budget=${BUDGET:-480}
model_timeout=${MODEL_TIMEOUT:-45}
duration=${DURATION:-300ms}
batches=${BATCHES:-1,2,4,8,16,32,64,128,256}
[[ ${THIN:-0} == 1 ]] && batches=1,4,16,64,256
peers=${PEERS:-resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016}
start=$(date +%s)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) logical cores"
  echo "cli: $CLI"
  echo "command: BATCHES=$batches DURATION=$duration MODEL_TIMEOUT=$model_timeout BUDGET=$budget WORLD_EXPORTS=${WORLD_EXPORTS:-} PEERS=$peers bench/explain-gpu.sh"
} >"$OUT/machine.txt"

# The ceilings and rate tables: measured once (about 30-60 s), then read from OUT/cache by every explain below.
timeout 330 "$CLI" devices --ceilings --recalibrate -v >"$OUT/ceilings.txt" 2>&1; echo "devices --ceilings exit $?" >>"$OUT/ceilings.txt"
timeout 30 "$CLI" devices --ceilings --json - >"$OUT/ceilings.json" 2>>"$OUT/ceilings.txt"
# The cache files themselves (rate tables included: what the predictions used), kept for replays on any machine:
# `batchwise explain MODEL --engine cuda [--precision fp16] --ceilings-file OUT/ceilings-cache/F.json --bench OUT/NAME.json`.
keep_ceilings() { mkdir -p "$OUT/ceilings-cache" && cp "$OUT"/cache/ceilings/*.json "$OUT/ceilings-cache/" 2>/dev/null; }
keep_ceilings

names=()
table() { python3 bench/explain-table.py "$OUT" "${names[@]}" >"$OUT/table.md" 2>"$OUT/table.err"; }
run() {
  local name=$1 model=$2; shift 2
  names+=("$name")
  local left=$(( budget - ($(date +%s) - start) ))
  if (( left < 15 )); then
    echo "skipped: the run's budget of $budget s was spent" >"$OUT/$name.txt"
    return 1
  fi
  local limit=$(( left < model_timeout ? left : model_timeout ))
  echo "$name: $(( $(date +%s) - start )) s so far, limit $limit s" >&2
  timeout "$limit" "$CLI" explain "$model" "$@" --engine cuda -b "$batches" --duration "$duration" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1
  local code=$?
  [[ $code == 124 ]] && echo "timed out after $limit s (MODEL_TIMEOUT)" >>"$OUT/$name.txt"
  echo "exit $code" >>"$OUT/$name.txt"
  [[ $code == 0 ]] || { echo "$name failed ($code): see $OUT/$name.txt" >&2; rm -f "$OUT/$name.json"; }
  table
  return $code
}
# ONLY (names, comma-separated: ONLY=bert) runs those models alone, their rows the whole table.
both() {
  [[ -z ${ONLY:-} || ",$ONLY," == *",$1,"* ]] || return 0
  run "$1-fp16" "$2" --precision fp16; run "$1-fp32" "$2"
}

both resnet50 zoo:resnet50
both resnet18 zoo:resnet18
both mobilenetv2 zoo:mobilenetv2
both yolov8n "zoo:yolov8n?size=640"
both bert zoo:bert
both mlp zoo:mlp
if [[ -n ${WORLD_EXPORTS:-} ]]; then
  for peer in ${peers//,/ }; do
    if [[ -f $WORLD_EXPORTS/$peer/model.onnx ]]; then
      both "$peer" "$WORLD_EXPORTS/$peer/model.onnx"
    else
      for p in fp16 fp32; do names+=("$peer-$p"); echo "skipped: no $WORLD_EXPORTS/$peer/model.onnx (bench/peers/world.py --export-only --work DIR writes it)" >"$OUT/$peer-$p.txt"; done
    fi
  done
fi
echo "total: $(( $(date +%s) - start )) s" >>"$OUT/machine.txt"
keep_ceilings
table
cat "$OUT/ceilings.txt" "$OUT/table.md"
