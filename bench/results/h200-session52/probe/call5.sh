#!/usr/bin/env bash
# Session 52, call 5 (~60 s, no carry): call 4 put the erf GELU epilogue at ~22 us of the own kernel's 111 (8192 x 3072 x
# 768) and its product + store at ~89. Here: a persistent kernel with one copy pipeline across its tiles, each tile's sums
# stored when done and their GELU applied in place during the next tile's products (gemm3), against call 4's best.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --shapes "8192,3072,768;12608,3072,768;12608,1536,384;1024,3072,768;128,3072,768" \
  --configs "256,64,4,1,1,0,0,0,0,0,3,0,132;256,64,4,1,1,0,0,1,0,0,3,0,132;256,64,4,1,1,0,0,0,0,0,1,1,0;256,64,4,1,1,0,0,1,0,0,1,1,0" 2>&1 | tail -n 60
