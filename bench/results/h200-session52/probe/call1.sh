#!/usr/bin/env bash
# Session 52, call 1 (~200 s, no carry): the fp16 warpgroup-MMA product + bias + erf GELU probe (wgmma_probe.py).
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 420 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" 2>&1 | tail -n 80
