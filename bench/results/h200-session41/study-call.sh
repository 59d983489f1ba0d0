#!/usr/bin/env bash
# Session 41's first call (after stage.sh; carry .device): the GPU's clock under held fp16/fp32 GEMMs through PyTorch and
# NVML (bench/device/sustained_clock.py, ~25 s, into $OUT/clock.txt), then issue 16's explain study in full on 85697f8,
# whose probe holds its own GEMMs and whose predictions price the sustained clock.
mkdir -p "$OUT"
timeout 60 python3 bench/device/sustained_clock.py 1.5 > "$OUT/clock.txt" 2>&1
CALL_SECONDS=$(( 575 - SECONDS )) bash bench/device/explain-study-call.sh
