#!/usr/bin/env bash
# Session 53 (ran as call 3 and hung: only one of the two consumer warpgroups released a stage, fixed after it; ran again as
# call 3b with a 120 s limit): the probe's persistent warp-specialized product (gemm5: one block an SM walking the tiles, a producer
# warpgroup filling one ring of stages across tiles, so the next tile's copies land during the last tile's epilogue)
# with and without the GELU (erff; A&S), 3 and 4 stages, against gemm2 (session 52's best) and cuBLASLt + the pass.
set -uo pipefail
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 120 python3 bench/results/h200-session52/probe/wgmma_probe.py --out "$OUT/probe" --triton "" --ptxas 0 --shapes "8192,3072,768;12608,1536,384" \
  --configs "256,64,4,1,1,0,0,0,0,0,1,0,0;256,64,4,1,1,0,0,1,0,0,5,0,132;256,64,4,1,1,0,0,0,0,0,5,0,132;256,64,4,1,1,0,0,0,0,0,5,0,132,1;256,64,3,1,1,0,0,0,0,0,5,0,132" 2>&1 | grep -a -v "^ptxas\|^nvrtc" | tr -d '\000' | tail -n 40
