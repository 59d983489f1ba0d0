#!/usr/bin/env bash
# Session 21, call 1 (main at .device/rev: the own split-K convolution kernel for dense fp16 convolutions too small to
# fill the GPU): its GPU layer tests against ORT and cuDNN, the classes whose plans it (or the shared own-conv epilogue)
# reaches, and ResNet-50 fp16 at b=1 and 8 with it (auto) and without it (off), alternating, in one process each.
source bench/device/call-lib.sh 540
unpack tests || { pack; exit 1; }
B="bench zoo:resnet50 --engine cuda --precision fp16"
q warm 40 "$CLI" $B -b 1 --duration 0.3s --warmup 0.1s
for i in 1 2 3; do
  q b1-auto-$i 25 "$CLI" $B -b 1,8 --json "$R/b1-auto-$i.json"
  q b1-off-$i 25 env BATCHWISE_SPLITK_CONV=off "$CLI" $B -b 1,8 --json "$R/b1-off-$i.json"
done
q profile-auto 40 "$CLI" $B -b 1 --profile
q profile-off 40 env BATCHWISE_SPLITK_CONV=off "$CLI" $B -b 1 --profile
timeout "$(lim 40)" "$CLI" compare zoo:resnet50 --engines ort,cuda --precision fp16 -b 1 > "$R/compare-r50-b1.txt" 2>&1
t "compare resnet50 b=1 exit $? $(grep -iE 'cosine|top' "$R/compare-r50-b1.txt" | tr -s ' ' | head -3 | cut -c1-200 | tr '\n' ';')"
CLASSES="SplitKConvGpuTests ModelGpuTests GroupedConvGpuTests PointwiseConvGpuTests KernelCompileTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=$(( $(left) - 20 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
t done
pack
