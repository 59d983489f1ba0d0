#!/usr/bin/env bash
# Session 37, call 2: the int8 block ends' products on warpgroup MMA (BATCHWISE_INT8_WGMMA=on, b5c4ebb; every kernel
# now compiled for sm_90a). First the GPU test (the same output bytes as mma.sync's, no local memory), then ResNet-50
# int8 symmetric at b=256 with it against the default, alternating, fp16 in the same call, and its per-layer profile.
source bench/device/call-lib.sh 575
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
BATCHWISE_REQUIRE_GPU=1 timeout 200 "$TESTS" -parallelMode none -method "*Warp_group_products_give_the_same_outputs_as_warp_products" -noColor > "$R/gpu-wgmma.txt" 2>&1
t "gpu test exit $? $(grep -E 'Total:' "$R/gpu-wgmma.txt" | tail -1)"
grep -E '^\|' "$R/gpu-wgmma.txt" | head -8 >> "$R/log.txt"
i8() { local tag=$1 l=$2; shift 2; q "$tag" "$l" env "$@" "$CLI" bench "$M" --engine cuda --precision int8 -b 256 --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/$1.json"; }
W=BATCHWISE_INT8_WGMMA=on
i8 warm 60
i8 wg-1 60 $W
i8 own-1 45
i8 wg-2 45 $W
f16 f16-1
i8 own-2 45
i8 wg-3 45 $W
f16 f16-2
q wg-prof 60 env $W "$CLI" bench "$M" --engine cuda --precision int8 -b 256 --profile --json "$R/wg-prof.json"
q own-prof 60 "$CLI" bench "$M" --engine cuda --precision int8 -b 256 --profile --json "$R/own-prof.json"
pack
