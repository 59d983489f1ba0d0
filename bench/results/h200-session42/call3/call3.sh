#!/usr/bin/env bash
# PREPARED (carry .device with node.tar.xz): the GPU test classes session 41's call 2 did not reach, first; then
# CeilingsGpuTests (its conv@14 side table is new since that call); the two int8 classes that ran into their limits
# (Int8PointwiseGpuTests 200 s, Int8ModelGpuTests 240 s) last, with what time is left.
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack tests node || { pack; exit 1; }
SKIP="StemPoolGpuTests ModelGpuTests KernelCaseGpuTests GroupedConvGpuTests ShapeGpuTests SplitKConvGpuTests NodeGpuTests AttentionGpuTests BranchesGpuTests ChildRunTests DataDependentGpuTests DynamicInt8GpuTests GpuCeilingsProbeTests Int8ChildGpuTests Int8ConvGpuTests Int8GemmGraphGpuTests Int8LayerGpuTests" \
  LAST="CeilingsGpuTests Int8PointwiseGpuTests Int8ModelGpuTests" BATCHWISE_ONNX_NODE_TESTS=$NODE \
  LIMITS="Int8PointwiseGpuTests=300 Int8ModelGpuTests=300" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) \
  bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
