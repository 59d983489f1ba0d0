#!/usr/bin/env bash
# Session 53: gemm7 (gemm6 in clusters of two along M, B shared by multicast) against gemm6, without and with the GELU.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 0 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,0,0,6,0,132;256,64,4,1,1,0,0,1,0,0,7,0,132;256,64,4,1,1,0,0,0,0,0,7,0,132;256,64,4,1,1,0,0,0,0,0,7,0,132,1" 2>&1 | grep -a -v "^ptxas\|^nvrtc" | tr -d '\000' | tail -n 40
