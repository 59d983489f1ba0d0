#!/usr/bin/env bash
# Session 38, call 3: GPU classes on the final build that call 1 cut at its limits (NodeGpuTests with ONNX's node cases,
# Int8ModelGpuTests) with longer limits, then the classes not run since session 36 in the time left.
source bench/device/call-lib.sh 570
unpack tests node || { pack; exit 1; }
FIRST="NodeGpuTests Int8ModelGpuTests"
DONE="Int8LayerGpuTests Int8PointwiseGpuTests Int8PrecisionGpuTests ModelGpuTests StemPoolGpuTests Int8ResidualFusionGpuTests QuantizedModelGpuTests OperatorCaseGpuTests KernelCaseGpuTests Int8ConvGpuTests SplitKConvGpuTests"
REST=$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u | grep -vxF -f <(tr ' ' '\n' <<< "$FIRST $DONE") | tr '\n' ' ')
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$FIRST $REST" LIMITS="Int8ModelGpuTests=230 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
