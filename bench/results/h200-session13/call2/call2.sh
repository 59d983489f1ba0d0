#!/usr/bin/env bash
# Session 13, call 2: issue 12's system shared-memory point across serve variants; explain's error study (#16 item 3);
# the ViT/DeiT/HF ViT/BERT peer rows (#16).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( ${DEADLINE:-530} - ($(date +%s) - start) )); }
if [ ! -x "$WORK/cli/Batchwise.Cli" ] || [ "$(cat "$WORK/rev" 2>/dev/null)" != "$(cat .device/rev)" ]; then
  tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli" && cp .device/rev "$WORK/rev"
fi
CLI=$WORK/cli/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
( python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world-x" --work "$WORK/exports" --export-only --jobs 6 --export-limit 200 \
    --models resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016,deit_small_patch16_224,vit-hf,bert > "$R/exports.log" 2>&1 ) &
EXP=$!
CLI="$CLI" OUT="$R/serve-ab" VARIANTS="|--instances 3|--pipeline-depth 3" CUDA_C=512 SYSTEM_C=512,1024 timeout 220 bash bench/device/serve-ab.sh > /dev/null 2>&1
t "serve-ab exit $?"
wait $EXP; t "exports: $(ls "$WORK/exports" 2>/dev/null | tr '\n' ' ')"
timeout $(( $(left) > 200 ? 200 : $(left) )) python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --budget 150 --models vit_small_patch16_224,deit_small_patch16_224,vit-hf,bert > "$R/world.log" 2>&1
t "world exit $?"
l=$(left); [ "$l" -gt 60 ] && { CLI="$CLI" OUT="$R/explain-study" WORLD_EXPORTS="$WORK/exports" BUDGET=$(( l - 25 )) THIN=1 timeout "$l" bash bench/explain-gpu.sh > "$R/explain-study.txt" 2>&1; t "explain study exit $?"; }
t "done"
