#!/usr/bin/env bash
# Session 52, call 3 (~60 s, no carry): call 2 found both halves slow (products alone 102 us, copies alone 139 us against
# cuBLASLt's 66 us whole). Here: no register hold between the products' commit and their wait (ptxas may serialize
# wgmma on it), ptxas's report, and clusters of 2 and 4 CTAs along M sharing each B stage through one multicast bulk copy.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 300 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --shapes "8192,3072,768;12608,1536,384;12608,3072,768" \
  --configs "256,64,4,1,1;256,64,4,1,1,0,0,0,0,1;256,64,4,1,1,1;256,64,4,1,1,0,0,0,1;256,64,4,1,1,0,0,0,2;256,64,4,1,1,0,0,1,2;256,64,4,1,1,0,0,0,4;256,64,3,1,1,0,0,0,2" 2>&1 | tail -n 100
