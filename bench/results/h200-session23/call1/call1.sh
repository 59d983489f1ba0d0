#!/usr/bin/env bash
# Session 23, call 1 (main at .device/rev, ce095d3: tactics timed by default, inside a captured CUDA graph; cuDNN's fused
# residual convolutions timed reading their residual): the GPU test classes the default touches, ResNet-50 fp16 at
# b=1/8/64/256 with the heuristics and with the new default (cold cache, then warm), the same A/B on six timm exports at
# b=1/64, and the explain helper's per-layer profiles (explain-asks.sh).
source bench/device/call-lib.sh 530
unpack tests || { pack; exit 1; }
D=bench/results/h200-session23/call1
MODELS=resnext50_32x4d,regnetx_016,mobilenetv3_large_100,efficientnet_b0,vit_small_patch16_224,convnext_tiny
mkdir -p "$R/exports"
timeout 220 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models $MODELS --jobs 6 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="ModelGpuTests MlpGpuTests PlanThreadsGpuTests ShapeGpuTests StemPoolGpuTests BranchesGpuTests TransferGpuTests StagedGpuTests PipelinedStagedGpuTests CeilingsGpuTests PointwiseConvGpuTests GroupedConvGpuTests SplitKConvGpuTests AttentionGpuTests DataDependentGpuTests TelemetryGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=200 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
B="bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256"
q r50-heur 40 "$CLI" $B --tactics heuristic --json "$R/r50-heur.json"
q r50-timed-cold 80 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --json "$R/r50-timed-cold.json"
q r50-timed-warm 40 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --json "$R/r50-timed-warm.json"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
P="--engine cuda --precision fp16 -b 1,64 --duration 0.4s --warmup 0.3s --max-windows 3"
for m in ${MODELS//,/ }; do
  f=$WORK/exports/$m/model.onnx
  [ -f "$f" ] || { t "$m: no export"; continue; }
  q "$m-heur" 25 "$CLI" bench "$f" $P --tactics heuristic --json "$R/$m-heur.json"
  q "$m-timed" 40 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" bench "$f" $P --json "$R/$m-timed.json"
done
(( $(left) > 70 )) && CLI=$CLI EXPORTS=$WORK/exports R=$R timeout "$(lim 90)" bash $D/explain-asks.sh
t "explain asks: $(tail -1 "$R/explain-asks/log.txt" 2>/dev/null)"
pack
