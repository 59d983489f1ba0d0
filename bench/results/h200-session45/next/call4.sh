#!/usr/bin/env bash
# Call 4 (build 9be93a4): the cuDNN SDPA probe (CudnnAttentionGpuTests: the composite SDPA graph through the backend API,
# a CPU reference at a small shape, BERT-base b=64 timed out of an interleaved QKV buffer), cuDNN's error/warning log
# beside it; then BERT b=64's per-step profile on the same machine (our fused attention's time a layer).
source bench/device/call-lib.sh "${CALL_SECONDS:-200}"
unpack tests || { pack; exit 1; }
q cudnn-sdpa 120 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG="$R/cudnn-log.txt" \
  "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CudnnAttentionGpuTests
grep -E "^\|" "$R/cudnn-sdpa-probe.md" >> "$R/log.txt" 2>/dev/null; grep -E "Total:|\[FAIL\]" "$R/cudnn-sdpa.txt" | head -5 >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout "$(lim 60)" python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models bert --jobs 1 > "$R/exports.log" 2>&1
q bert-prof 30 "$CLI" bench "$WORK/exports/bert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/bert-prof.json"
pack
