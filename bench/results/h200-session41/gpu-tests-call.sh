#!/usr/bin/env bash
# Session 41's GPU test call (carry .device with node.tar.xz): CeilingsGpuTests first (the held GEMMs are new in 85697f8),
# then the classes session 40 did not reach (Int8PointwiseGpuTests in full, the node cases), then every other class.
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack tests node || { pack; exit 1; }
DONE="StemPoolGpuTests ModelGpuTests KernelCaseGpuTests GroupedConvGpuTests ShapeGpuTests SplitKConvGpuTests"  # session 40, on 45b1deb
FIRST="CeilingsGpuTests Int8PointwiseGpuTests NodeGpuTests"
REST=$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u | grep -vxF -f <(tr ' ' '\n' <<< "$FIRST $DONE") | tr '\n' ' ')
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$FIRST $REST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
