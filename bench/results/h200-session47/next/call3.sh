#!/usr/bin/env bash
# PREPARED, NOT RUN (for the next session; carry .device with node.tar.xz): the GPU test classes on session 47's final
# code (1f71bcb's attention choice and c6ca3a8's Cast / Gather changes were CPU-checked only): the attention and model
# classes first, then the ONNX node cases, then every other class until the deadline (session 47's call 2 did not reach
# most; its 100 s limit cut CeilingsGpuTests, Int8ModelGpuTests and Int8PointwiseGpuTests).
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack tests node || { pack; exit 1; }
FIRST="AttentionGpuTests CudnnAttentionGpuTests CudnnMatmulEpilogueGpuTests ModelGpuTests NodeGpuTests"
BATCHWISE_ONNX_NODE_TESTS=$NODE FIRST="$FIRST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
