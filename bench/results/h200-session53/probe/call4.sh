#!/usr/bin/env bash
# Session 53: gemm6 (gemm5's persistent ring, its copies by TMA: A's box by a tensor copy, B's image by a bulk copy, one
# producer thread) with and without the GELU, beside gemm5 and gemm2, at DistilBERT's and ViT-S's first MLP product.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 120 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 0 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,0,0,1,0,0;256,64,4,1,1,0,0,0,0,0,5,0,132;256,64,4,1,1,0,0,1,0,0,6,0,132;256,64,4,1,1,0,0,0,0,0,6,0,132;256,64,4,1,1,0,0,0,0,0,6,0,132,1;256,64,3,1,1,0,0,0,0,0,6,0,132" 2>&1 | grep -a -v "^ptxas\|^nvrtc" | tr -d '\000' | tail -n 40
