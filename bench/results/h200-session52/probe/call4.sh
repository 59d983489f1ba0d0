#!/usr/bin/env bash
# Session 52, call 4 (~60 s, no carry): call 3 put the own kernel's loss in a fixed ~11.6 us a tile (its k steps run at the
# tensor cores' rate). Here: the epilogue staged through shared memory (whole 512-byte rows a warp), not stored at all,
# persistent blocks over the tiles, and K doubled to separate the per-tile cost from the per-step one.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --shapes "8192,3072,768;8192,3072,1536;12608,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,0,0,1,0,0;256,64,4,1,1,0,0,0,0,0,1,1,0;256,64,4,1,1,0,0,0,0,0,1,2,0;256,64,4,1,1,0,0,0,0,0,1,1,132;256,64,4,1,1,0,0,0,0,0,1,0,132;256,64,4,1,1,0,0,1,0,0,1,1,0;256,64,4,1,1,0,0,1,0,0,1,2,0;256,64,3,1,1,0,0,0,0,0,1,1,0" 2>&1 | tail -n 100
