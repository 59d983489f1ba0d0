#!/usr/bin/env bash
# Session 23, call 2 (main at .device/rev, 460d7a3: timed tactics by default, a small problem keeping the heuristics'
# choice): the GPU classes call 1 failed or did not reach plus the ONNX node cases; ResNet-50 fp16 b=1/8/64/256 and six
# timm exports at b=1/64 with the heuristics and with the default (the same A/B as call 1); the peer rows of those seven
# models against PyTorch's best (world.py); explain on two of the rows the explain change targets.
source bench/device/call-lib.sh 540
unpack tests node || { pack; exit 1; }
MODELS=resnext50_32x4d,regnetx_016,mobilenetv3_large_100,efficientnet_b0,vit_small_patch16_224,convnext_tiny
mkdir -p "$R/exports"
timeout 220 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models resnet50,$MODELS --jobs 7 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="PlanThreadsGpuTests ShapeGpuTests DataDependentGpuTests TelemetryGpuTests OperatorGpuTests SmallRowsGpuTests StemConvGpuTests KernelCaseGpuTests NodeGpuTests" \
  BATCHWISE_ONNX_NODE_TESTS=$NODE TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=150 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
B="bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256"
q r50-heur 40 "$CLI" $B --tactics heuristic --json "$R/r50-heur.json"
q r50-timed 80 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" $B --json "$R/r50-timed.json"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
P="--engine cuda --precision fp16 -b 1,64 --duration 0.4s --warmup 0.3s --max-windows 3"
for m in ${MODELS//,/ }; do
  f=$WORK/exports/$m/model.onnx
  [ -f "$f" ] || { t "$m: no export"; continue; }
  q "$m-heur" 25 "$CLI" bench "$f" $P --tactics heuristic --json "$R/$m-heur.json"
  q "$m-timed" 40 env BATCHWISE_CACHE_DIR=$WORK/timed "$CLI" bench "$f" $P --json "$R/$m-timed.json"
done
BATCHWISE_CACHE_DIR=$WORK/timed timeout "$(lim 200)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models resnet50,$MODELS --torch-windows 5 --torch-window-seconds 0.4 --jobs 7 --budget $(( $(left) > 215 ? 195 : $(left) - 20 )) > "$R/world.log" 2>&1
t "world exit $? $(grep -cE '^\|' "$R/world/world.md" 2>/dev/null) table lines"
pack
