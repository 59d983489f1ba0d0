#!/usr/bin/env bash
# Session 23, call 4 (main at .device/rev, 32fd8d3, the engine of the session's last commit): the GPU classes calls 1-3
# did not reach.
source bench/device/call-lib.sh 230
unpack tests || { pack; exit 1; }
CLASSES="OperatorCaseGpuTests Int8ChildGpuTests Int8ResidualFusionGpuTests CudaSharedMemoryGpuTests KernelCompileTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=110 DEADLINE=215 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
