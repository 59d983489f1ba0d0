#!/usr/bin/env bash
# Session 35, call 3 (one command line on the warm H100): Int8PointwiseGpuTests with BATCHWISE_INT8_CHAIN=off for the
# whole run, to see whether the projection test's one-step difference (call 2) comes from the chain default.
source bench/device/call-lib.sh 200; unpack tests || { pack; exit 1; }; export BATCHWISE_INT8_CHAIN=off; CLASSES="Int8PointwiseGpuTests" LIMITS="Int8PointwiseGpuTests=180" TESTS=$TESTS OUT=$R/gpu LIMIT=180 DEADLINE=$(( $(left) - 5 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1; cat "$R/gpu/summary.txt" >> "$R/log.txt"; grep -E "FAIL|max abs|\| resnet50" $R/gpu/*.log | head; pack
