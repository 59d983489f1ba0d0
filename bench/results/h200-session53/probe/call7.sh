#!/usr/bin/env bash
# Session 53: gemm8 with CTA-scope barrier waits and remote arrivals (cutlass's ClusterBarrier forms) against gemm6.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 0 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,0,0,6,0,132;256,64,4,1,1,0,0,1,1,0,8,0,132;256,64,4,1,1,0,0,0,1,0,8,0,132;256,64,4,1,1,0,0,1,2,0,8,0,132;256,64,4,1,1,0,0,0,2,0,8,0,132" 2>&1 | grep -a -v "^ptxas\|^nvrtc" | tr -d '\000' | tail -n 40
