#!/usr/bin/env bash
# Session 52, call 2 (~60 s, no carry): where call 1's own kernel loses (267 TFLOP/s against cuBLASLt's 602): without
# its GELU, without loads, without products; wgmma's 128-byte swizzle instead of no swizzle; ptxas's report.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1;256,64,4,1,0,0,0,1;256,64,4,1,0,1;256,64,4,1,0,0,1;256,64,4,1,1;256,64,4,1,1,0,0,1;256,64,4,1,1,1;256,64,3,1,1;128,64,3,2,1;256,64,4,1,1,0,0,0,1;256,64,4,1,1,0,0,1,1;256,64,4,1,0,0,0,0,1" 2>&1 | tail -n 80
