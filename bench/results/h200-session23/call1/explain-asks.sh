#!/usr/bin/env bash
# explain's six failing GPU rows (issue 16, session 22 study): per-layer profiles (CUDA events, layer by layer) at the
# batches where each row is off, to set beside explain's per-layer predictions (the study JSONs' layers_at_last and
# bench/explain-layers.py). About 80-90 s on an H200: eight bench runs, each cut off on its own.
#   CLI=/path/to/Batchwise.Cli EXPORTS=dir-of-NAME/model.onnx R=results-dir bash explain-gpu-asks.sh
# Writes $R/explain-asks/NAME.json, NAME.layers.csv (every layer at every batch), NAME.txt and log.txt.
set -uo pipefail
: "${CLI:?CLI: the published Batchwise.Cli}" "${EXPORTS:?EXPORTS: folder of NAME/model.onnx}" "${R:?R: results folder}"
O=$R/explain-asks
mkdir -p "$O"
start=$(date +%s)
p() { # NAME LIMIT_S MODEL ARGS...: bench with --profile at the given batches
  local name=$1 limit=$2 model=$3; shift 3
  if [[ $model != zoo:* && ! -f $model ]]; then echo "$name: no $model" >>"$O/log.txt"; return; fi
  timeout "$limit" "$CLI" bench "$model" --engine cuda --profile --duration 200ms --json "$O/$name.json" "$@" >"$O/$name.txt" 2>&1
  echo "[$(( $(date +%s) - start )) s] $name exit $?" >>"$O/log.txt"
}
# resnet18 fp32: +38/+25/+23% at b=1/2/4 (is the 7x7 stage's 512->512 3x3 still 160 us at b=1; how it scales to b=4)
p r18-fp32 12 zoo:resnet18 --precision fp32 -b 1,4
# resnet18 fp16: the fused stem (Conv 7x7/2 + ReLU + MaxPool, fp16 only) at both ends, to price it as one kernel
p r18-fp16 12 zoo:resnet18 --precision fp16 -b 1,256
# convnext_tiny fp32: +30% at b=1, +18% at b=2
p convnext-fp32 14 "$EXPORTS/convnext_tiny/model.onnx" --precision fp32 -b 1,2
# regnetx_016 fp32: +22/+94/+70% at b=1/2/4 (b=2 barely faster than b=1: which layers)
p regnetx-fp32 14 "$EXPORTS/regnetx_016/model.onnx" --precision fp32 -b 1,2,4
# regnetx_016 fp16: +16% at b=1, +45% at b=256 (session 21's b=256 profile predates session 22's engine)
p regnetx-fp16 14 "$EXPORTS/regnetx_016/model.onnx" --precision fp16 -b 1,256
# efficientnet_b0 fp16: +36..41% at b=1..16 (call 6 has b=4; the squeeze-excite means at b=1 and 16 give their fixed cost)
p effnet-fp16 12 "$EXPORTS/efficientnet_b0/model.onnx" --precision fp16 -b 1,16
# bert fp32: knee 32 predicted, 128 measured (b=32..256 within 10% but b=128 +11%: real or noise)
p bert-fp32 16 zoo:bert --precision fp32 -b 32,128
echo "[$(( $(date +%s) - start )) s] done" >>"$O/log.txt"
