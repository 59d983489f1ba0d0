#!/usr/bin/env bash
# Session 13, call 4 (final commit): the GPU tests and ONNX's node tests;
# ResNet-50 fp16 at the fixed shapes against phase 1 (b8b556f) in one run, alternating; the int8 route (issue 19).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 540 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli"
rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
TESTS=$WORK/tests/Batchwise.Cuda.Tests
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
# Every GPU test but the node tests (below) and three measurement probes that time every candidate of a library and
# judge nothing (ConvFusionProbe, Int8Probe, Int8GraphEngines: minutes each, run in sessions 9-12); a skip is a failure.
BATCHWISE_REQUIRE_GPU=1 timeout "$(lim 240)" "$TESTS" -parallelMode none -class- '*NodeGpuTests' -class- '*ConvFusionProbeGpuTests' -class- '*Int8ProbeGpuTests' \
  -class- '*Int8GraphEnginesGpuTests' -noColor > "$R/gpu-tests.log" 2>&1
t "gpu tests exit $? $(grep -E 'Total:' "$R/gpu-tests.log")"
NODE=$(python3 -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node"))' 2>/dev/null)
if [ ! -d "$NODE" ]; then python3 -m onnx.backend.test.cmd_tools generate-data -o "$WORK/onnx-data" > /dev/null 2>&1; NODE=$(find "$WORK/onnx-data" -maxdepth 3 -type d -name node | head -1); fi
BATCHWISE_REQUIRE_GPU=1 BATCHWISE_ONNX_NODE_TESTS="$NODE" timeout "$(lim 90)" "$TESTS" -parallelMode none -class '*NodeGpuTests' -noColor > "$R/node-tests.log" 2>&1
t "node tests exit $? ($(ls "$NODE" 2>/dev/null | wc -l) cases in $NODE) $(grep -E 'Total:' "$R/node-tests.log")"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-40 | tr '\n' ';')"; }
for i in 1; do
  for who in new old; do
    bin=$CLI; [ $who = old ] && bin=$OLD
    q fixed-$who-$i 45 "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-$who-$i.json"
  done
done
timeout "$(lim 60)" "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
export BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused
q r50q-256 110 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50q-256.json"
q r50q-1-64 40 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,64 --json "$R/r50q-1-64.json"
q r50q-compare 60 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 8
t "done"
