#!/usr/bin/env bash
# Session 53, call 1 (~585 s; carry .device after staging .device1..5; a1e13444): the classes covering session 52's review
# commits (2025ad24's L2 window once per plan: L2PersistenceGpuTests, ModelGpuTests; 880db3f / 08e304b / 8dbbf5a1's own
# GELU product: MlpGpuTests), then the classes session 52's call 9 cut or did not reach (its next.sh), until the deadline.
source bench/device/call-lib.sh "${CALL_SECONDS:-585}"
unpack tests || { pack; exit 1; }
CLASSES="L2PersistenceGpuTests MlpGpuTests ModelGpuTests Int8NarrowPointwiseGpuTests Int8PrecisionGpuTests OperatorGpuTests PipelinedStagedGpuTests PlanThreadsGpuTests PointwiseConvGpuTests QOperatorGpuTests QuantizedModelGpuTests ShapeGpuTests SmallRowsGpuTests StagedGpuTests StemConvGpuTests StemPoolGpuTests TelemetryGpuTests TransferGpuTests Int8PointwiseGpuTests Int8ModelGpuTests"
CLASSES="$CLASSES" LIMITS="ModelGpuTests=150 MlpGpuTests=100 Int8PointwiseGpuTests=200 Int8ModelGpuTests=240" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 12 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
