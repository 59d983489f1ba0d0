#!/usr/bin/env bash
# Session 36, call 2: does float32 slow from b=64 to b=256 for want of cuDNN workspace? Call 1's explain study measured
# ResNet-50 fp32 4,395 -> 4,179 img/s and ResNet-18 fp32 13,849 -> 10,814 from b=64 to b=256 (the failing explain rows),
# with the default 256 MB a convolution's algorithm may take. The same benches at 256 and 2,048 MB, alternating.
source bench/device/call-lib.sh 280
unpack || { pack; exit 1; }
f32() { local tag=$1 model=$2 ws=$3; q "$tag" 80 env BATCHWISE_CONV_WORKSPACE_MB=$ws "$CLI" bench "zoo:$model" --engine cuda -b 64,256 --duration 400ms --json "$R/$tag.json"; }
f32 r50-ws256 resnet50 256; f32 r50-ws2048 resnet50 2048
f32 r18-ws256 resnet18 256; f32 r18-ws2048 resnet18 2048
f32 r50-ws2048-2 resnet50 2048; f32 r50-ws256-2 resnet50 256
pack
