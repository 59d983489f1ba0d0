#!/usr/bin/env bash
# Session 33, call 2 — PREPARED, NOT RUN (no device machine was lent in session 33). Issue 16's ResNet-50 fp16 b=1 bar
# (4,000 img/s; 3,245 in session 31) with session 33's BATCHWISE_SPLITK_PROJECTION=on (b942f0c: the four projection
# shortcuts computed in their block end's split-K kernel, 56 -> 52 kernels), on top of session 32's programmatic
# dependent launch and BATCHWISE_SPLITK_CONV=every (run session 32's call 1 first: it decides PDL and every). One process
# each, alternating, b=1 and 8; then SplitKConvGpuTests (the split-K kernel at ResNet-50's sizes against ORT and cuDNN,
# its registers with the new second input, and the b=1 model with and without the shortcuts inside, timed). About 300 s.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
r50() { # TAG ENV...: ResNet-50 fp16 at b=1 and 8 under the given environment
  local tag=$1; shift
  q "$tag" 40 env "$@" "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8 --duration 500ms --json "$R/$tag.json"
}
r50 r50-every-pdl-1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-every-pdl-proj-1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-every-proj-1 BATCHWISE_PDL=off BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-default-1 BATCHWISE_PDL=off
r50 r50-every-pdl-2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-every-pdl-proj-2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-default-2 BATCHWISE_PDL=off
q r50-prof-every-pdl-proj 40 env BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --profile --duration 300ms --json "$R/r50-prof-every-pdl-proj.json"
CLASSES="SplitKConvGpuTests" LIMITS="SplitKConvGpuTests=180" TESTS=$TESTS OUT=$R/gpu LIMIT=180 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
