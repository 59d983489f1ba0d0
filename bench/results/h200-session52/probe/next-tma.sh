#!/usr/bin/env bash
# Prepared in session 52, ran in session 53 (call 1: cuTensorMapEncodeTiled refused Python ints, fixed with cuuint32_t /
# cuuint64_t; call 2 after the fix, 18 s, no carry; the two 128 x 128 two-blocks-an-SM configs removed: ptxas refuses
# the products at the 80 registers two blocks of 384 threads leave): the probe's product with TMA copies (gemm4: A's
# box by a tensor copy in the 128-byte swizzle, B's packed image by a bulk copy, one producer thread, byte-counted
# barriers), alone and in clusters of two sharing B by multicast, with and without the GELU, against call 4's best
# (gemm2: cp.async, 111 us at 8192 x 3072 x 768; cuBLASLt + the pass 101-105). If the products alone reach cuBLASLt's
# ~63 us, the epilogue is what is left: here also with the erf of Abramowitz & Stegun 7.1.26 (the 14th field: |error|
# <= 1.5e-7, a third of erff's cost over a copy in call 7) in place of erff, on gemm4 and on gemm2; and gemm4 with
# 128 x 128 tiles, two blocks an SM (the producer's registers given to the consumers by setmaxnreg), so one block's
# epilogue runs beside the other's products.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --shapes "8192,3072,768;12608,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,1,0,4;256,64,4,1,1,0,0,1,1,0,4;256,64,4,1,1,0,0,0,1,0,4,0,0,1;256,64,4,1,1,0,0,0,2,0,4;256,64,4,1,1,0,0,1,2,0,4;256,64,4,1,1,0,0,0,2,0,4,0,0,1;256,64,4,1,1,0,0,0,0,0,1,0,0;256,64,4,1,1,0,0,0,0,0,1,0,0,1" 2>&1 | tail -n 60
