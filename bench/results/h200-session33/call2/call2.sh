#!/usr/bin/env bash
# Session 33, call 2 — PREPARED, NOT RUN (no device machine was lent in session 33). Issue 16's ResNet-50 fp16 b=1 bar
# (4,000 img/s; 3,245 in session 31) with session 33's BATCHWISE_SPLITK_PROJECTION=on (b942f0c: the four projection
# shortcuts computed in their block end's split-K kernel, 56 -> 52 kernels), on top of session 32's programmatic
# dependent launch and BATCHWISE_SPLITK_CONV=every (run session 32's call 1 first: it decides PDL and every). One process
# each, alternating, b=1 and 8; then SplitKConvGpuTests (the split-K kernel at ResNet-50's sizes against ORT and cuDNN,
# its registers with the new second input, and the b=1 model with and without the shortcuts inside, timed); float32
# ResNet-50 and ResNet-18 at b=64-256 with the cuDNN workspace limit at 256 and 2,048 MB. About 420 s.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
r50() { # TAG ENV...: ResNet-50 fp16 at b=1 and 8 under the given environment
  local tag=$1; shift
  q "$tag" 40 env "$@" "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8 --duration 500ms --json "$R/$tag.json"
}
# (session 32's call 1 times the default, PDL and every against each other; this call the shortcuts on top)
r50 r50-every-pdl-1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-every-pdl-proj-1 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-every-pdl-2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every
r50 r50-every-pdl-proj-2 BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
r50 r50-every-proj BATCHWISE_PDL=off BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on
# float32 at large batches with a larger cuDNN workspace limit (BATCHWISE_CONV_WORKSPACE_MB, this session; 256 MB by
# default): session 24 measured ResNet-50 fp32 4,992 img/s at b=128 and 4,152 at b=256 (explain's +37% there).
for ws in 256 2048; do
  q r50-fp32-ws$ws 60 env BATCHWISE_CONV_WORKSPACE_MB=$ws "$CLI" bench zoo:resnet50 --engine cuda --precision fp32 -b 64,128,256 --duration 300ms --json "$R/r50-fp32-ws$ws.json"
  q r18-fp32-ws$ws 50 env BATCHWISE_CONV_WORKSPACE_MB=$ws "$CLI" bench zoo:resnet18 --engine cuda --precision fp32 -b 64,128,256 --duration 300ms --json "$R/r18-fp32-ws$ws.json"
done
q r50-prof-every-pdl-proj 40 env BATCHWISE_PDL=on BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --profile --duration 300ms --json "$R/r50-prof-every-pdl-proj.json"
CLASSES="SplitKConvGpuTests" LIMITS="SplitKConvGpuTests=180" TESTS=$TESTS OUT=$R/gpu LIMIT=180 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
