#!/usr/bin/env bash
# Session 54, call 2 (~40 s, no carry): the persistent kernels with the tile staged through shared memory (EPI 3: a warp's
# 16 x 64 block written to its own padded buffer, then whole 128-byte rows stored), as call 1 found the half2 stores were
# ~35 us of gemm8's 97.7. gemm8 alone (no GELU / GELU / A&S erf), in clusters of two, gemm6 (256 x 4, 192 x 5), gemm9
# (ping-pong, 5 and 4 stages, no GELU / GELU / A&S), gemm5 (cp.async producer, no tensor maps), and gemm8 with the old stores as the same-run baseline.
# Fields: bn,bk,stages,minb,swz,noload,nomma,no-GELU,cluster,midhold,variant,epi,grid,A&S.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 120 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 1 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,1,0,8,3,132;256,64,4,1,1,0,0,1,1,0,8,3,132;256,64,4,1,1,0,0,0,2,0,8,3,132;256,64,4,1,1,0,0,0,0,0,6,3,132;192,64,5,1,1,0,0,0,0,0,6,3,132;256,64,5,1,1,0,0,1,0,0,9,3,132;256,64,5,1,1,0,0,0,0,0,9,3,132;256,64,4,1,1,0,0,0,0,0,9,3,132;256,64,4,1,1,0,0,0,1,0,8,3,132,1;256,64,5,1,1,0,0,0,0,0,9,3,132,1;256,64,4,1,1,0,0,0,0,0,5,3,132;256,64,4,1,1,0,0,1,0,0,5,3,132;256,64,4,1,1,0,0,0,1,0,8,0,132" 2>&1 | grep -a -v "^nvrtc" | tr -d '\000' | tail -n 45
