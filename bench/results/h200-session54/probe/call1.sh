#!/usr/bin/env bash
# Session 54, call 1 (session 53's prepared probe, ~30 s, no carry) plus which kernel cuBLASLt runs at the same shapes.
# tensor cores' 0.47 when neither the copies' L2 traffic (the multicast halved B's: no change) nor the GELU (hidden) is
# what bounds them. gemm8 (CTA-scope barriers, B by tensor copies) whole; with the ring's hand-offs but no copies
# (NOLOAD: the products at their own rate behind the barriers); with the copies but no products (NOMMA: the ring's
# delivery rate); without the stores (EPI 2), and without copies or stores; clusters of 1 and 2; with the GELU;
# gemm6 with deeper rings of narrower tiles (128 x 192, 5 stages; 128 x 128, 7 stages: more stages in flight while
# two are held by the products); gemm9, the ping-pong form (64 x 256 tiles on alternate consumer warpgroups, 5 and 4
# stages), with and without the GELU; ptxas's log of the first (any C7510 "wgmma serialized" warning).
# Fields: bn,bk,stages,minb,swz,noload,nomma,no-GELU,cluster,midhold,variant,epi,grid,A&S.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 100 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 1 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,1,1,0,8,0,132;256,64,4,1,1,1,0,1,1,0,8,0,132;256,64,4,1,1,0,1,1,1,0,8,0,132;256,64,4,1,1,0,0,1,1,0,8,2,132;256,64,4,1,1,1,0,1,1,0,8,2,132;256,64,4,1,1,1,0,1,2,0,8,0,132;256,64,4,1,1,0,1,1,2,0,8,0,132;256,64,4,1,1,0,0,0,1,0,8,0,132;192,64,5,1,1,0,0,1,0,0,6,0,132;192,64,5,1,1,0,0,0,0,0,6,0,132;128,64,7,1,1,0,0,1,0,0,6,0,132;128,64,7,1,1,0,0,0,0,0,6,0,132;256,64,5,1,1,0,0,1,0,0,9,0,132;256,64,5,1,1,0,0,0,0,0,9,0,132;256,64,4,1,1,0,0,0,0,0,9,0,132;256,64,5,1,1,0,0,1,0,0,9,2,132" 2>&1 | grep -a -v "^nvrtc" | tr -d '\000' | tail -n 60
timeout 60 python3 bench/results/h200-session54/probe/cublas_kernel.py 2>&1 | tee "$OUT/cublas-kernel.txt" | tail -8
