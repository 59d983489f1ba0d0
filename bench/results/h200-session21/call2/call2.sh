#!/usr/bin/env bash
# Session 21, call 2 (main at .device/rev: the split-K convolution as thread-block clusters reducing through distributed
# shared memory): its GPU layer tests, ModelGpuTests (graph replay == step by step), and ResNet-50 fp16 at b=1 and 8 with
# it (auto), with 1x1 layers too (all) and without it (off), alternating, one process each.
source bench/device/call-lib.sh 300
unpack tests || { pack; exit 1; }
B="bench zoo:resnet50 --engine cuda --precision fp16"
q warm 40 "$CLI" $B -b 1 --duration 0.3s --warmup 0.1s
for i in 1 2 3; do
  q b1-auto-$i 25 "$CLI" $B -b 1,8 --json "$R/b1-auto-$i.json"
  q b1-off-$i 25 env BATCHWISE_SPLITK_CONV=off "$CLI" $B -b 1,8 --json "$R/b1-off-$i.json"
  q b1-all-$i 25 env BATCHWISE_SPLITK_CONV=all "$CLI" $B -b 1,8 --json "$R/b1-all-$i.json"
done
q profile-all 40 env BATCHWISE_SPLITK_CONV=all "$CLI" $B -b 1 --profile --json "$R/profile-all.json"
q profile-auto 40 "$CLI" $B -b 1 --profile --json "$R/profile-auto.json"
CLASSES="SplitKConvGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
grep -hE "^\| (layer|split-K)" "$R"/gpu/SplitKConvGpuTests.log >> "$R/log.txt"
t done
pack
