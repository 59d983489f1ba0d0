#!/usr/bin/env bash
# Session 17, call 1 (code of .device/rev): issue 11's checks from the final code: the GPU test classes (shapes,
# profiles, saved engine, staging, branches, models, kernels, ONNX's node tests, operator cases), ResNet-50 fp16 at
# the fixed shapes against phase 1 (b8b556f overlay) in the same call; then Nsight Compute's detailed sections for the
# first own kernels of MobileNetV2 int8 and fp16 at b=64 (issue 19: why the depthwise kernel on 8-bit data is slow).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 565 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests" && cp -r "$WORK/cli" "$WORK/old"
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/node.tar.xz -C "$WORK" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev); ncu=${NCU:-none}"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
CLASSES="ShapeGpuTests ModelGpuTests BranchesGpuTests StagedGpuTests PipelinedStagedGpuTests TransferGpuTests SmallRowsGpuTests DataDependentGpuTests AttentionGpuTests MlpGpuTests GroupedConvGpuTests PointwiseConvGpuTests QuantizedModelGpuTests KernelCaseGpuTests KernelCompileTests TelemetryGpuTests PlanThreadsGpuTests CeilingsGpuTests OperatorGpuTests NodeGpuTests OperatorCaseGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 175 )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q warm-new 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 30 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q fixed-new 45 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-new.json"
q fixed-old 45 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-old.json"
timeout "$(lim 40)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
if [ -n "$NCU" ]; then
  SECT="--section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section InstructionStats"
  timeout "$(lim 70)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 14 $SECT --csv --page details \
    env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64 --duration 0.1s --warmup 0.05s --max-windows 1 > "$R/ncu-m2q.csv" 2> "$R/ncu-m2q.log"
  t "ncu m2q exit $? $(wc -l < "$R/ncu-m2q.csv") lines"
  timeout "$(lim 50)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 10 $SECT --csv --page details \
    "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64 --duration 0.1s --warmup 0.05s --max-windows 1 > "$R/ncu-m2.csv" 2> "$R/ncu-m2.log"
  t "ncu m2 exit $? $(wc -l < "$R/ncu-m2.csv") lines"
fi
find "$R" -name '*.json' -size +200k -exec xz -9 {} \;
t "done"
cd "$OUT" && tar -cJf r.tar.xz r && cp r/log.txt log.txt && rm -rf r
