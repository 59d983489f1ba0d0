#!/usr/bin/env bash
# Session 15, call A (code of .device/rev): independent branches on a second stream (issue 11's b=1 point). First the
# GPU test that compares branches on, off and ONNX Runtime run after run; then ResNet-50 fp16 at the fixed shapes with
# branches on (default), off (BATCHWISE_BRANCHES=off) and phase 1 (b8b556f) in one run, b=1 alone alternating; BERT and
# fp32 on/off; then the GPU test classes the change touches, class by class, until the time is spent.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 555 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests" && cp -r "$WORK/cli" "$WORK/old"
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old" && tar -xJf .device/node.tar.xz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR=$R timeout "$(lim 150)" "$TESTS" -parallelMode none -class '*.BranchesGpuTests' -noColor > "$R/branches-tests.log" 2>&1
t "BranchesGpuTests exit $? $(grep -E 'Total:' "$R/branches-tests.log")"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
q warm-on 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 40 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q fixed-on 45 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --verbose --json "$R/fixed-on.json"
q fixed-off 45 env BATCHWISE_BRANCHES=off "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-off.json"
q fixed-old 45 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-old.json"
for i in 1 2; do
  q b1-on-$i 20 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-on-$i.json"
  q b1-old-$i 20 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-old-$i.json"
  q b1-off-$i 20 env BATCHWISE_BRANCHES=off "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --json "$R/b1-off-$i.json"
done
q bert-on 40 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1,32 --json "$R/bert-on.json"
q bert-off 40 env BATCHWISE_BRANCHES=off "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1,32 --json "$R/bert-off.json"
q fp32-on 30 "$CLI" bench zoo:resnet50 --engine cuda -b 1,64 --json "$R/fp32-on.json"
q fp32-off 30 env BATCHWISE_BRANCHES=off "$CLI" bench zoo:resnet50 --engine cuda -b 1,64 --json "$R/fp32-off.json"
CLASSES="ModelGpuTests ShapeGpuTests StagedGpuTests PipelinedStagedGpuTests TransferGpuTests DataDependentGpuTests AttentionGpuTests MlpGpuTests PointwiseConvGpuTests GroupedConvGpuTests OperatorCaseGpuTests NodeGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 10 )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
t "gpu tests: $(grep -c 'exit 0' "$R/gpu/summary.txt") classes exit 0 of $(wc -l < "$R/gpu/summary.txt")"
cat "$R/gpu/summary.txt" >> "$R/log.txt"
t "done"
