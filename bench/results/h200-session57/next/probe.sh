#!/usr/bin/env bash
# Prepared in session 57, not run (python only: no carry, no staging; ~90 s): the own fp16 GELU product's three
# schedules as the engine writes them (cooperative: the default; ping-pong; handoff), each with and without its GELU,
# beside cuBLASLt + bias and + PyTorch's GELU pass, at the transformers' MLP shapes and the N = 768 products
# (../probe/pingpong.py). Decides which form call1.sh's end-to-end runs should carry.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
# Two processes, each with its own limit: a schedule that hangs on the GPU (its turn or hand-off barriers) cannot take
# the other's numbers with it.
cd bench/results/h200-session57/probe
timeout 100 python3 pingpong.py --out "$OUT/a" --variants coop,coop-nogelu,handoff,handoff-nogelu 2>&1 | tail -n 40
echo "exit ${PIPESTATUS[0]}"
timeout 80 python3 pingpong.py --out "$OUT/b" --variants pingpong,pingpong-nogelu 2>&1 | tail -n 30
echo "exit ${PIPESTATUS[0]}"
