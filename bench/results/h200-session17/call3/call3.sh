#!/usr/bin/env bash
# Session 17, call 3 (code of .device/rev): the tiled depthwise kernel (BATCHWISE_DEPTHWISE=tiled, the new default)
# against the row kernel (BATCHWISE_DEPTHWISE=rows) in the same call: GPU test classes that run depthwise layers (kernel
# cases with the new multi-group cases, models, MobileNetV2 int8 against ORT), MobileNetV2 fp16 and int8 alternating,
# then three timm models with depthwise layers against PyTorch (world.py) and the same exports with the row kernel.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 565 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests"
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/node.tar.xz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests; EXP=$WORK/exports
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
MODELS=mobilenetv3_large_100,efficientnet_b0,convnext_tiny
timeout 200 python3 bench/peers/world.py --export-only --cli "$CLI" --out "$R/world" --work "$EXP" --models $MODELS --jobs 3 > "$R/export.txt" 2>&1 &
EXPORTS=$!
CLASSES="KernelCaseGpuTests QuantizedModelGpuTests ModelGpuTests GroupedConvGpuTests NodeGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=170 BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $EXPORTS; t "exports exit $?: $(ls "$EXP" 2>/dev/null | tr '\n' ' ')"
timeout "$(lim 40)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
I8="BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
for i in 1 2; do
  q m2-tiled-$i 30 env BATCHWISE_DEPTHWISE=tiled "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-tiled-$i.json"
  q m2-rows-$i 30 env BATCHWISE_DEPTHWISE=rows "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-rows-$i.json"
done
q m2q-tiled 50 env $I8 BATCHWISE_DEPTHWISE=tiled "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-tiled.json"
q m2q-rows 50 env $I8 BATCHWISE_DEPTHWISE=rows "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-rows.json"
timeout "$(lim 40)" "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda > "$R/m2q-compare.txt" 2>&1; t "m2q compare exit $? $(grep -iE 'cosine|top-1' "$R/m2q-compare.txt" | head -3 | tr -s ' ' | tr '\n' ';')"
timeout "$(lim 130)" python3 bench/peers/world.py --cli "$CLI" --out "$R/world" --work "$EXP" --models $MODELS --budget 120 > "$R/world.txt" 2>&1; t "world exit $?"
for m in ${MODELS//,/ }; do
  [ -f "$EXP/$m/model.onnx" ] && q "$m-rows" 30 env BATCHWISE_DEPTHWISE=rows "$CLI" bench "$EXP/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-rows.json"
  [ -f "$EXP/$m/model.onnx" ] && q "$m-tiled" 30 env BATCHWISE_DEPTHWISE=tiled "$CLI" bench "$EXP/$m/model.onnx" --engine cuda --precision fp16 -b 1,64 --duration 1s --warmup 0.5s --max-windows 3 --json "$R/$m-tiled.json"
done
q m2q-profile 45 env $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64 --profile --json "$R/m2q-profile.json"
find "$R" -name '*.json' -size +200k -exec xz -9 {} \;
t "done"
cd "$OUT" && tar -cJf r.tar.xz r && cp r/log.txt log.txt && rm -rf r
