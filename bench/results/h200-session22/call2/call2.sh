#!/usr/bin/env bash
# Session 22, call 2 (main at .device/rev: the fused stem kernel, input -> Conv -> ReLU -> MaxPool as one): its GPU tests
# (ResNet-50 against ORT, the stem's time against its layers, registers), ModelGpuTests, then ResNet-50 and ResNet-18 fp16
# at b=1/8/64/256 with the fused stem and without it (BATCHWISE_STEM_POOL=off) in the same call, and a b=256 profile.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
CLASSES="StemPoolGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=240 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
grep -h "^| " "$R"/gpu/*.log 2>/dev/null | grep -i "stem\|fused" | head -20 >> "$R/log.txt"
B="bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256"
q r50-fused 45 "$CLI" $B --json "$R/r50-fused.json"
q r50-apart 45 env BATCHWISE_STEM_POOL=off "$CLI" $B --json "$R/r50-apart.json"
q r50-fused2 45 "$CLI" $B --json "$R/r50-fused2.json"
q r50-prof256 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --profile --json "$R/r50-prof256.json"
B18="bench zoo:resnet18 --engine cuda --precision fp16 -b 1,64,256"
q r18-fused 35 "$CLI" $B18 --json "$R/r18-fused.json"
q r18-apart 35 env BATCHWISE_STEM_POOL=off "$CLI" $B18 --json "$R/r18-apart.json"
pack
