#!/usr/bin/env bash
# Prepared in session 57, not run (python only: no carry, no staging; ~60 s): the own fp16 GELU product's three
# schedules as the engine writes them (cooperative: the default; ping-pong; handoff), each with and without its GELU,
# beside cuBLASLt + bias and + PyTorch's GELU pass, at the transformers' MLP shapes and the N = 768 products
# (../probe/pingpong.py). Decides which form call1.sh's end-to-end runs should carry.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
cd bench/results/h200-session57/probe && timeout 240 python3 pingpong.py --out "$OUT" 2>&1 | tail -n 70
