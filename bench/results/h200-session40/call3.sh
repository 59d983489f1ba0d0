#!/usr/bin/env bash
# Session 40, call 3 (after calls 1-2; carry .device/node.tar.xz): the GPU test classes session 39 changed first
# (StemPoolGpuTests: the stem's channel splits; ModelGpuTests: NVML's clock sample and the b=1 logits; CeilingsGpuTests:
# the 14x14/7x7 grouped tables; the depthwise and kernel-case classes: 45b1deb's write), then the rest in the time left.
source bench/device/call-lib.sh "${CALL_SECONDS:-575}"
unpack tests node || { pack; exit 1; }
FIRST="StemPoolGpuTests ModelGpuTests CeilingsGpuTests KernelCaseGpuTests GroupedConvGpuTests ShapeGpuTests SplitKConvGpuTests Int8PointwiseGpuTests"
REST=$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u | grep -vxF -f <(tr ' ' '\n' <<< "$FIRST") | tr '\n' ' ')
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$FIRST $REST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
