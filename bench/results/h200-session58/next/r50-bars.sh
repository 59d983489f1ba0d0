#!/usr/bin/env bash
# Session 58 (CALL_SECONDS, default 120; carry .device after staging): issue 16's two ResNet-50 fp16 bars on one card,
# runs queued 20 at a time: b=1 and b=256, twice each, in turn, with the card's clock and power beside them.
source bench/device/call-lib.sh "${CALL_SECONDS:-120}"
unpack || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv,noheader >> "$R/log.txt"
for round in 1 2; do
  for b in 1 256; do
    q r50-$b-$round 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --queue 20 --duration 2s --warmup 1s -b $b --json "$R/r50-$b-$round.json"
  done
done
nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv,noheader >> "$R/log.txt"
pack
