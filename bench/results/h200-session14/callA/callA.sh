#!/usr/bin/env bash
# Session 14, call A (code of .device/rev): the CUDA engine's GPU tests class by class (bench/device/gpu-tests.sh),
# ONNX's node tests (Debian's data, carried), the NVRTC compile cases. Carries only tests.tar.xz and node.tar.xz (the
# carry limit); call B reuses the extracted runtime on the same warm machine.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
rm -rf "$WORK/tests" && tar -xJf .device/tests.tar.xz -C "$WORK" && tar -xJf .device/node.tar.xz -C "$WORK"
TESTS=$WORK/tests/Batchwise.Cuda.Tests
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev); $(ls $WORK/node | wc -l) node cases"
BATCHWISE_REQUIRE_GPU=1 timeout 60 "$TESTS" -parallelMode none -class '*.KernelCompileTests' -noColor > "$R/kernel-compile.log" 2>&1
t "KernelCompileTests exit $? $(grep -E 'Total:' "$R/kernel-compile.log")"
TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=$(( 530 - ($(date +%s) - start) )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
t "gpu tests: $(grep -c 'exit 0' "$R/gpu/summary.txt") classes exit 0 of $(wc -l < "$R/gpu/summary.txt")"
cat "$R/gpu/summary.txt" >> "$R/log.txt"
t "done"
