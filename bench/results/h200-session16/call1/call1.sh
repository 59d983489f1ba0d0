#!/usr/bin/env bash
# Session 16, call 1 (code of .device/rev): the GPU test classes from the code after session 15's last engine changes
# (StepLanes by binary search, the producer map, run on the CPU only so far); MobileNetV2 int8 and fp16 layer profiles
# at b=64 with the int8 decisions (issue 19: where int8 loses a third to fp16); ResNet-50 fp16 b=1 layer profile.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 560 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests"
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/node.tar.xz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50-b1-profile 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --profile --json "$R/r50-b1.json"
timeout "$(lim 60)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
q m2q-profile 120 env BATCHWISE_INT8_TRACE=1 BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64 --profile --json "$R/m2q.json"
q m2-profile 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64 --profile --json "$R/m2.json"
CLASSES="BranchesGpuTests ModelGpuTests ShapeGpuTests StagedGpuTests PipelinedStagedGpuTests TransferGpuTests DataDependentGpuTests AttentionGpuTests MlpGpuTests PointwiseConvGpuTests GroupedConvGpuTests NodeGpuTests OperatorCaseGpuTests QuantizedModelGpuTests Int8LayerGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 10 )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
find "$R" -name '*.json' -size +200k -exec xz -9 {} \;
t "done"
