#!/usr/bin/env bash
# PREPARED, NOT RUN (for the next session; publish of this session's final code, carry .device/node.tar.xz too:
# tar -cJf .device/node.tar.xz -C /usr/share/libonnx-testdata/data node): every GPU test class and ONNX's node cases on
# the sm_90a build (session 37 compiles every kernel for sm_90a on compute capability 9.0; its calls 3-4 ran ModelGpuTests,
# StemPoolGpuTests, Int8ResidualFusionGpuTests, QuantizedModelGpuTests, OperatorCaseGpuTests, KernelCaseGpuTests,
# Int8ConvGpuTests, SplitKConvGpuTests and Int8LayerGpuTests, whose route expectation was then fixed). Those first, then
# the rest in the time left (a second call for the classes not reached: CLASSES="..." from the summary's "not run" lines).
source bench/device/call-lib.sh 575
unpack tests node || { pack; exit 1; }
FIRST="Int8LayerGpuTests Int8PointwiseGpuTests Int8ModelGpuTests Int8PrecisionGpuTests NodeGpuTests"
REST=$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u | grep -vxF -f <(tr ' ' '\n' <<< "$FIRST ModelGpuTests StemPoolGpuTests Int8ResidualFusionGpuTests QuantizedModelGpuTests OperatorCaseGpuTests KernelCaseGpuTests Int8ConvGpuTests SplitKConvGpuTests") | tr '\n' ' ')
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$FIRST $REST" LIMITS="Int8PointwiseGpuTests=300 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
