#!/usr/bin/env bash
# session 11 call 2 (main at e814950: own stem, kernel gather by default): explain's error study on the GPU (#16 item 3),
# ResNet-50 b=1 with timed tactics, the int8 plan's per-layer routes and times (#19).
set -uo pipefail
R=$OUT/r; mkdir -p "$R"; WORK=/tmp/bw; mkdir -p "$WORK"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli"
CLI=$WORK/cli/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
( python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world-x" --work "$WORK/exports" --export-only --jobs 6 --export-limit 200 \
    --models resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016 > "$R/exports.log" 2>&1 ) &
EXP=$!
timeout 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8 --timed-tactics > "$R/r50-b1-timed.txt" 2>&1
timeout 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8 --profile --json "$R/r50-b1.json" > "$R/r50-b1.txt" 2>&1
t "b=1 timed tactics / profile done"
timeout 150 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
BATCHWISE_INT8_TRACE=1 BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on timeout 100 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50q-256.json" > "$R/r50q-256.txt" 2>&1
timeout 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --profile --json "$R/r50-256.json" > "$R/r50-256.txt" 2>&1
t "int8 profile done"
wait $EXP; t "exports: $(ls $WORK/exports 2>/dev/null | tr '\n' ' ')"
left=$(( 575 - ($(date +%s) - start) ))
CLI="$CLI" OUT="$R/explain-study" WORLD_EXPORTS="$WORK/exports" BUDGET=$(( left - 25 )) timeout "$left" bash bench/explain-gpu.sh > "$R/explain-study.txt" 2>&1
t "explain study exit $?"
cd "$OUT" && tar -czf r.tgz r && rm -rf r && t "packed"
