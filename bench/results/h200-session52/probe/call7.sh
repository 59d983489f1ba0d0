#!/usr/bin/env bash
# Session 52, call 7 (~30 s, no carry): what bounds the erf GELU pass (gelu_probe.py).
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 200 python3 bench/results/h200-session52/probe/gelu_probe.py --out "$OUT/gelu-probe.txt" 2>&1 | tail -n 30
