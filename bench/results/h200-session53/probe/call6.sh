#!/usr/bin/env bash
# Session 53 (ran as call 6): gemm8 (B by tensor copies over W^T too; clusters of 1 and of 2 with the tensor multicast)
# against gemm6, its barrier waits then acquire.cluster and its remote arrivals release.cluster; the probe now has call
# 7's CTA-scope forms (cutlass's ClusterBarrier), so this script reruns call 7.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 0 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,0,0,6,0,132;256,64,4,1,1,0,0,1,1,0,8,0,132;256,64,4,1,1,0,0,0,1,0,8,0,132;256,64,4,1,1,0,0,1,2,0,8,0,132;256,64,4,1,1,0,0,0,2,0,8,0,132" 2>&1 | grep -a -v "^ptxas\|^nvrtc" | tr -d '\000' | tail -n 40
