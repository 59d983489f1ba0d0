#!/usr/bin/env bash
# Session 13, call 4 (final code, 9e80de2): the GPU tests and ONNX's node tests. Carries only tests.tar.xz (the carry
# limit); call 5 reuses the extracted runtime on the same warm machine.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 540 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
tar -xJf .device/tests.tar.xz -C "$WORK"
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
t "done"
