#!/usr/bin/env bash
# Session 15, call E (code of .device/rev, L2 window off as by default): the int8 GPU test classes and the NVRTC compile
# cases from the code with independent branches (int8 plans put their float library steps on the side lane too).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
rm -rf "$WORK/cli" "$WORK/tests" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests" && tar -xJf .device/testdiff.tar.xz -C "$WORK/tests"
TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
CLASSES="QuantizedModelGpuTests Int8LayerGpuTests KernelCompileTests Int8ModelGpuTests Int8PrecisionGpuTests Int8ResidualFusionGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 LIMITS="Int8ModelGpuTests=240" DEADLINE=${DEADLINE:-300} bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" | tee -a "$R/log.txt"
t "done"
