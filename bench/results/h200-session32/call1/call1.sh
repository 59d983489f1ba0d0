#!/usr/bin/env bash
# Session 32, call 1 — PREPARED, NOT RUN (no device machine was lent in session 32). On a publish of main at or after
# session 32's programmatic dependent launch commit:
# 1. Programmatic dependent launch (BATCHWISE_PDL=on; never run on a GPU): ResNet-50 fp16 at b=1 and 8, PDL off/on x the
#    split-K kernel where it splits (auto) / on every convolution of at most two waves, unsplit where a split does not
#    pay (every: all of ResNet-50's kernels at b=1 generated), one process each, auto-off and every-on twice (issue 16:
#    b=1 >= 4,000 img/s, 3,245 in session 31); MobileNetV2 and BERT at b=1 off/on; ProgrammaticLaunchGpuTests (bit for bit against
#    ordinary launches, its times in gpu/pdl.md); [moved to session 33's call 2: SplitKConvGpuTests and Int8PointwiseGpuTests]
#    (SplitKConvGpuTests: the split-K kernel now fetches its filter's first
#    stages before it waits for the kernel before it).
# 2. MobileNetV2 int8 at b=256 with the pointwise kernel on its 96 -> 576 and 160 -> 960 expansions (session 32's
#    BATCHWISE_INT8_POINTWISE_WIDE, on by default) against off, and against ORT; session 31's commits that never ran on
#    a GPU: bw_quantize in every plan's prelude, the graph-route residual guard (Int8ResidualFusionGpuTests),
#    KernelCompileTests, QuantizedModelGpuTests (MobileNetV2 int8 against ORT).
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
r50() { # TAG ENV...: ResNet-50 fp16 at b=1 and 8 under the given environment
  local tag=$1; shift
  q "$tag" 40 env "$@" "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8 --duration 500ms --json "$R/$tag.json"
}
r50 r50-auto-off1 BATCHWISE_PDL=off
r50 r50-auto-on1 BATCHWISE_PDL=on
r50 r50-every-off1 BATCHWISE_PDL=off BATCHWISE_SPLITK_CONV=every
r50 r50-every-on1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-auto-off2 BATCHWISE_PDL=off
r50 r50-every-on2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
for pdl in off on; do
  q m2-$pdl 30 env BATCHWISE_PDL=$pdl "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1 --duration 500ms --json "$R/m2-$pdl.json"
  q bert-$pdl 30 env BATCHWISE_PDL=$pdl "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --duration 500ms --json "$R/bert-$pdl.json"
done
I8="env BATCHWISE_INT8=on"
q m2q-opt 20 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q 60 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q.json"
q m2q-notwide 40 env BATCHWISE_INT8=on BATCHWISE_INT8_POINTWISE_WIDE=off "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-notwide.json"
q m2q-again 40 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-again.json"
q m2q-cmp 30 $I8 "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 32
CLASSES="ProgrammaticLaunchGpuTests QuantizedModelGpuTests KernelCompileTests Int8ResidualFusionGpuTests" LIMITS="ProgrammaticLaunchGpuTests=150" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 12 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
