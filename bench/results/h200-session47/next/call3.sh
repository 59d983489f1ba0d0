#!/usr/bin/env bash
# Session 47 call 3 (carry .device with node.tar.xz): the GPU test classes on the final code of session 46 (f708f44's mask
# view, fb909e7's plan selection, b1527a8's probe set-up were CPU-checked only): those first, then the ONNX node cases,
# then every other class until the deadline.
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack tests node || { pack; exit 1; }
FIRST="AttentionGpuTests CudnnAttentionGpuTests CudnnMatmulEpilogueGpuTests ModelGpuTests NodeGpuTests"
BATCHWISE_ONNX_NODE_TESTS=$NODE FIRST="$FIRST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
