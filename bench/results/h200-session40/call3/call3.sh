#!/usr/bin/env bash
# Session 40, call 3 as it ran (inline, 110 s, the H200 of call 2 still warm, ~230 s of device time left): four GPU classes
# on the test binary call 2 had unpacked in /tmp/bw/tests (45b1deb). A first try with call-lib's unpack failed at once:
# a call without a carry finds neither .device nor the staged parts (the device tool keeps only what a carry names).
source bench/device/call-lib.sh 190; TESTS=/tmp/bw/tests/Batchwise.Cuda.Tests; ls -la $TESTS | head -1; CLASSES="CeilingsGpuTests ShapeGpuTests GroupedConvGpuTests SplitKConvGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=90 DEADLINE=$(( $(left) - 10 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1; cat "$R/gpu/summary.txt" >> "$R/log.txt"; pack; cat $OUT/log.txt
