#!/usr/bin/env bash
# PREPARED, NOT RUN (~560 s; carry .device with the CLI staged as call 9's): the GPU classes call 9 cut or did not reach,
# with room for their plan builds (tactics timed): Int8NarrowPointwise and Int8Precision cut at 60 s there.
source bench/device/call-lib.sh "${CALL_SECONDS:-560}"
unpack tests || { pack; exit 1; }
CLASSES="Int8NarrowPointwiseGpuTests Int8PrecisionGpuTests OperatorGpuTests PipelinedStagedGpuTests PlanThreadsGpuTests PointwiseConvGpuTests QOperatorGpuTests QuantizedModelGpuTests ShapeGpuTests SmallRowsGpuTests StagedGpuTests StemConvGpuTests StemPoolGpuTests TelemetryGpuTests TransferGpuTests Int8PointwiseGpuTests Int8ModelGpuTests"
CLASSES="$CLASSES" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 12 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
