#!/usr/bin/env bash
# Session 33, call 3: the decisive part of session 32's call 1 and this session's call 2 in one call (the device came
# late in the session, with 25 minutes of device time): ResNet-50 fp16 at b=1 with the default, PDL + every, and PDL +
# every + the split-K projection shortcuts, alternating twice, PDL alone once; MobileNetV2 int8 at b=256 with the wider
# pointwise kernel (on by default since session 32, never measured) against off; ProgrammaticLaunchGpuTests (bit for bit
# against ordinary launches) and SplitKConvGpuTests (the shortcut's kernel against ORT, the b=1 model timed).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
r50() { # TAG ENV...: ResNet-50 fp16 at b=1 under the given environment
  local tag=$1; shift
  q "$tag" 35 env "$@" "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 400ms --json "$R/$tag.json"
}
r50 r50-default-1 BATCHWISE_PDL=off
r50 r50-every-pdl-1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-every-pdl-proj-1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-auto-pdl-1 BATCHWISE_PDL=on
r50 r50-default-2 BATCHWISE_PDL=off
r50 r50-every-pdl-2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-every-pdl-proj-2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-every-nopdl BATCHWISE_PDL=off BATCHWISE_SPLITK_CONV=every
I8="env BATCHWISE_INT8=on"
q m2q-opt 20 "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 --no-verify -o "$WORK/m2q.onnx"
q m2q-wide-1 40 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-wide-1.json"
q m2q-narrow 40 env BATCHWISE_INT8=on BATCHWISE_INT8_POINTWISE_WIDE=off "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-narrow.json"
q m2q-wide-2 40 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/m2q-wide-2.json"
CLASSES="ProgrammaticLaunchGpuTests SplitKConvGpuTests" LIMITS="ProgrammaticLaunchGpuTests=130 SplitKConvGpuTests=130" TESTS=$TESTS OUT=$R/gpu LIMIT=130 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
