#!/usr/bin/env bash
# Session 51, call 2 (~300 s; carry .device after staging .device1..4): the GPU classes of session 50's review commits
# (ee475d7 the kernel cache's per-function settings, 8b3313a Run = RunQueued(1)), not yet run on a GPU.
source bench/device/call-lib.sh "${CALL_SECONDS:-300}"
unpack tests || { pack; exit 1; }
FIRST="ModelGpuTests SplitKConvGpuTests" CLASSES="ModelGpuTests SplitKConvGpuTests QueuedRunsGpuTests ProgrammaticLaunchGpuTests AttentionGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
