#!/usr/bin/env bash
# Session 56 (carry .device with node.tar.xz after staging; CALL_SECONDS default 440): the GPU classes that have not met
# session 55's engine code (the own GELU product, default on sm_90, and the review commit 20dd9786 that changed its
# text): MlpGpuTests and ModelGpuTests first, ONNX's node cases, then the int8 classes last passed in session 43.
source bench/device/call-lib.sh "${CALL_SECONDS:-440}"
unpack tests node || { pack; exit 1; }
CLASSES=${CLASSES:-"MlpGpuTests ModelGpuTests NodeGpuTests Int8PointwiseGpuTests Int8ModelGpuTests"}
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$CLASSES" LIMITS="MlpGpuTests=90 ModelGpuTests=120 NodeGpuTests=120 Int8PointwiseGpuTests=200 Int8ModelGpuTests=240" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=$(( $(left) - 12 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
