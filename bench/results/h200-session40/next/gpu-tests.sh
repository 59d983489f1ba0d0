#!/usr/bin/env bash
# PREPARED (session 40 ran the first seven classes on 45b1deb: calls 2 and 3, all passed; carry .device/node.tar.xz): the GPU test classes session 39 changed first
# were those; what is left is Int8PointwiseGpuTests in full (cut in session 38), the node cases and every other class.
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack tests node || { pack; exit 1; }
DONE="StemPoolGpuTests ModelGpuTests CeilingsGpuTests KernelCaseGpuTests GroupedConvGpuTests ShapeGpuTests SplitKConvGpuTests"  # session 40, on 45b1deb
FIRST="Int8PointwiseGpuTests NodeGpuTests"
REST=$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u | grep -vxF -f <(tr ' ' '\n' <<< "$FIRST $DONE") | tr '\n' ' ')
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$FIRST $REST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
