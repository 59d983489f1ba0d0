#!/usr/bin/env bash
# Session 37, call 1: issue 19's ResNet-50 int8 at b=256 with its residual block ends on cuBLASLt's int8 GEMM
# (BATCHWISE_INT8_BLOCK_END=cublaslt, 23454fd: the residual as C, alpha per channel, ReLU in the epilogue, candidates
# timed) alternating with the default (own pointwise kernel, cuDNN's graph for the 7x7 ends) and fp16; the cuBLASLt
# form's per-layer profile; bench/int8-gemm-probe.py (cuBLASLt's int8 block-end shapes in python: every candidate
# timed, its rounding checked); Int8CublasLtBlockEndGpuTests (against the default routes and ONNX Runtime).
source bench/device/call-lib.sh 575
unpack tests || { pack; exit 1; }
M=$WORK/r50qs.onnx
q opt 30 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$M"
i8() { local tag=$1 l=$2; shift 2; q "$tag" "$l" env "$@" "$CLI" bench "$M" --engine cuda --precision int8 -b 256 --duration 400ms --json "$R/$tag.json"; }
f16() { q "$1" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/$1.json"; }
LT=BATCHWISE_INT8_BLOCK_END=cublaslt
i8 warm 60
i8 lt-1 90 $LT
i8 own-1 45
i8 lt-2 45 $LT
f16 f16-1
i8 own-2 45
i8 lt-3 45 $LT
f16 f16-2
q lt-prof 60 env $LT "$CLI" bench "$M" --engine cuda --precision int8 -b 256 --profile --json "$R/lt-prof.json"
q probe 100 python3 bench/int8-gemm-probe.py --iters 30
CLASSES="Int8CublasLtBlockEndGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=$(( $(left) - 10 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
