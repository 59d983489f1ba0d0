#!/usr/bin/env bash
# Session 52, call 9 (~300 s; carry .device with node.tar.xz after staging .device1..4; 40a98df): the GPU classes waiting
# since sessions 47-49: the ONNX node cases first, then the classes after Int8ModelGpuTests in the list that no call of
# sessions 47-51 reached (Int8ModelGpuTests and Int8PointwiseGpuTests, 200-240 s each, last), until the deadline.
source bench/device/call-lib.sh "${CALL_SECONDS:-310}"
unpack tests node || { pack; exit 1; }
FIRST="NodeGpuTests"
CLASSES="NodeGpuTests Int8NarrowPointwiseGpuTests Int8PrecisionGpuTests Int8ResidualFusionGpuTests Int8SiluFusionGpuTests KernelCaseGpuTests OperatorCaseGpuTests OperatorGpuTests PipelinedStagedGpuTests PlanThreadsGpuTests PointwiseConvGpuTests QOperatorGpuTests QuantizedModelGpuTests ShapeGpuTests SmallRowsGpuTests StagedGpuTests StemConvGpuTests StemPoolGpuTests TelemetryGpuTests TransferGpuTests Int8PointwiseGpuTests"
BATCHWISE_ONNX_NODE_TESTS=$NODE FIRST="$FIRST" CLASSES="$CLASSES" LIMITS="NodeGpuTests=120 OperatorCaseGpuTests=90 Int8PointwiseGpuTests=200" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=$(( $(left) - 12 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
