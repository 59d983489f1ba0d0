#!/usr/bin/env bash
# Session 49, call 1 (~560 s; carry .device with node.tar.xz): the probe of cuDNN's attention with the padding mask given
# as sequence lengths (cudnn-frontend's padding_mask: the products' M / N / K overridden, scores past the lengths -inf)
# against the bias and no-bias graphs at BERT's shape, each configuration timed, and its output against a CPU reference
# (what it writes past a query length and for an item with no key kept); then the GPU test classes, the review commits'
# first (2dafa7b, 4fb59db: attention, cuDNN epilogue, model classes), the ONNX node cases, every other class to the deadline.
source bench/device/call-lib.sh "${CALL_SECONDS:-560}"
unpack tests node || { pack; exit 1; }
q cudnn-probe 60 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CudnnAttentionGpuTests
cp "$R"/cudnn-sdpa-probe.md "$R/probe.md" 2>/dev/null
grep -E "^\| cudnn" "$R"/cudnn-sdpa-probe.md | cut -c1-400 >> "$R/log.txt"
grep -E "Total:|\[FAIL\]" "$R"/cudnn-probe.txt >> "$R/log.txt"
FIRST="AttentionGpuTests CudnnMatmulEpilogueGpuTests ModelGpuTests NodeGpuTests"
BATCHWISE_ONNX_NODE_TESTS=$NODE FIRST="$FIRST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
