#!/usr/bin/env bash
# Session 37, call 4 (typed inline on the machine call 3 left warm, recorded here): GPU test classes on the sm_90a build
# in the last 300 s of device time.
source bench/device/call-lib.sh 300; unpack tests >/dev/null 2>&1 || true; CLASSES="OperatorCaseGpuTests KernelCaseGpuTests Int8ConvGpuTests Int8LayerGpuTests SplitKConvGpuTests" TESTS=$WORK/tests/Batchwise.Cuda.Tests OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1; cat "$R/gpu/summary.txt" | tee -a "$R/log.txt"; pack
