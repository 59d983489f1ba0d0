#!/usr/bin/env bash
# Session 23, call 5 (main at .device/rev, 32fd8d3): Int8ModelGpuTests with the 240 s earlier sessions gave it (call 3
# cut it at 110 s without a result).
source bench/device/call-lib.sh 270
unpack tests || { pack; exit 1; }
CLASSES="Int8ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=250 DEADLINE=260 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
