#!/usr/bin/env bash
# Why a plan built with timed tactics in this process runs b=1 slower than the same plan read from the timing cache
# (sessions 23-24: ViT-S fp16 b=1 2,343 img/s cold against 2,590 warm; not the JIT, not NVRTC, the plans the same).
# Each variant is a fresh process with a fresh cache directory (cold), then the same directory again (warm):
#   plain, CUDA_DEVICE_MAX_CONNECTIONS=32 (each timed problem creates and destroys a stream), CUDA_MODULE_LOADING=EAGER,
#   --tactics heuristic (no timing at all), BATCHWISE_PLAN_THREADS=0 (no query threads).
#   CLI=/path/Batchwise.Cli MODEL=model.onnx OUT=dir [B=1] [VARIANTS="plain heuristic ..."] bash bench/device/cold-build.sh
# Writes OUT/NAME-cold.txt, OUT/NAME-warm.txt and OUT/summary.txt (throughput and p50 of each). About 15 s a run on an H200.
set -uo pipefail
: "${CLI:?CLI: the published Batchwise.Cli}" "${MODEL:?MODEL: an .onnx file or zoo:NAME}" "${OUT:?OUT: results folder}"
B=${B:-1}
mkdir -p "$OUT"
P=(--engine cuda --precision fp16 -b "$B" --duration 0.4s --warmup 0.3s --max-windows 3)
row() { grep -E "│ +$B( knee)? +│" "$1" | awk -F'│' '{gsub(/ /,"",$4); gsub(/ /,"",$7); print $4" img/s, p50 "$7" ms"}'; }
run() { # NAME [ENV=VALUE ...] [-- extra bench args]
  local name=$1; shift
  local envs=() extra=()
  while (($#)); do [[ $1 == -- ]] && { shift; extra=("$@"); break; }; envs+=("$1"); shift; done
  local cache; cache=$(mktemp -d)
  for phase in cold warm; do
    timeout 60 env BATCHWISE_CACHE_DIR="$cache" "${envs[@]}" "$CLI" bench "$MODEL" "${P[@]}" "${extra[@]}" > "$OUT/$name-$phase.txt" 2>&1
    local status=$?
    echo "$name $phase: $(row "$OUT/$name-$phase.txt") (exit $status)" | tee -a "$OUT/summary.txt"
  done
  rm -rf "$cache"
}
want() { [[ " ${VARIANTS:-plain connections32 eager heuristic no-plan-threads} " == *" $1 "* ]]; }
want plain && run plain
want connections32 && run connections32 CUDA_DEVICE_MAX_CONNECTIONS=32
want eager && run eager CUDA_MODULE_LOADING=EAGER
want heuristic && run heuristic -- --tactics heuristic
want no-plan-threads && run no-plan-threads BATCHWISE_PLAN_THREADS=0
