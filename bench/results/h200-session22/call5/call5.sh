#!/usr/bin/env bash
# Session 22, call 5 (main at .device/rev: the fused stem, matmul tactics timed with their beta and residual, the scratch
# fix): the two classes call 4 failed (MlpGpuTests' timed cases, PlanThreadsGpuTests), ResNet-50 fp16 at b=1/8/64/256 with
# the heuristics and with timed tactics (cold cache, then warm), then the explain error study at every batch 1..256.
source bench/device/call-lib.sh 500
unpack tests || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016 --jobs 5 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="MlpGpuTests PlanThreadsGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=90 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
B="bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256"
q r50-heur 45 "$CLI" $B --json "$R/r50-heur.json"
q r50-timed-cold 90 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --timed-tactics --json "$R/r50-timed-cold.json"
q r50-timed-warm 50 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --timed-tactics --json "$R/r50-timed-warm.json"
q r50-timed-prof 30 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --timed-tactics --profile --json "$R/r50-timed-prof.json"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
CLI=$CLI OUT=$R/explain-study WORLD_EXPORTS=$WORK/exports BUDGET=$(( $(left) - 20 )) bash bench/explain-gpu.sh > "$R/explain-study.log" 2>&1
t "explain study exit $? $(tail -1 "$R/explain-study/table.md")"
rm -rf "$R/explain-study/cache/kernels"
pack
