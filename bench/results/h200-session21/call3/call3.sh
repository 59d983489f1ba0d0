#!/usr/bin/env bash
# Session 21, call 3 (main at .device/rev: split-K knobs): ResNet-50 fp16 b=1 and 8 over the split-K kernel's shape
# (most splits 8 or 16, fewest splits 2 or 8, stages 8 or 16) against cuDNN (off), twice each, alternating; the GPU layer
# tests with 16 splits and 16 stages; a b=1 profile of the best-looking shape.
source bench/device/call-lib.sh 330
unpack tests || { pack; exit 1; }
B="bench zoo:resnet50 --engine cuda --precision fp16"
q warm 40 "$CLI" $B -b 1 --duration 0.3s --warmup 0.1s
declare -A CFG=(
  [off]="BATCHWISE_SPLITK_CONV=off"
  [d8]="BATCHWISE_SPLITK_CONV=auto"
  [min8]="BATCHWISE_SPLITK_MIN_SPLITS=8"
  [st16]="BATCHWISE_SPLITK_STAGES=16"
  [x16]="BATCHWISE_SPLITK_MAX_SPLITS=16 BATCHWISE_SPLITK_STAGES=16"
  [x16min8]="BATCHWISE_SPLITK_MAX_SPLITS=16 BATCHWISE_SPLITK_STAGES=16 BATCHWISE_SPLITK_MIN_SPLITS=8"
)
for i in 1 2; do
  for c in off d8 min8 st16 x16 x16min8; do
    q $c-$i 25 env ${CFG[$c]} "$CLI" $B -b 1,8 --json "$R/$c-$i.json"
  done
done
q profile-x16 40 env ${CFG[x16]} "$CLI" $B -b 1 --profile --json "$R/profile-x16.json"
CLASSES="SplitKConvGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=80 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
BATCHWISE_SPLITK_MAX_SPLITS=16 BATCHWISE_SPLITK_STAGES=16 CLASSES="SplitKConvGpuTests" TESTS=$TESTS OUT=$R/gpu16 LIMIT=60 DEADLINE=70 bash bench/device/gpu-tests.sh > "$R/gpu-tests16.txt" 2>&1
cat "$R/gpu16/summary.txt" >> "$R/log.txt"
grep -hE "^\| (layer|split-K)" "$R"/gpu/SplitKConvGpuTests.log "$R"/gpu16/SplitKConvGpuTests.log >> "$R/log.txt"
t done
pack
