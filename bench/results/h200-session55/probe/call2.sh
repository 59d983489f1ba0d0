#!/usr/bin/env bash
# Session 55, probe call (~60 s, no carry): the engine's own GELU product outside the engine (engine_gemm.py: its exact
# program text, variants by text edits, ptxas's report, timed beside cuBLASLt + the pass in the same run).
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 150 python3 bench/results/h200-session55/probe/engine_gemm.py --out "$OUT" 2>&1 | tail -n 40
