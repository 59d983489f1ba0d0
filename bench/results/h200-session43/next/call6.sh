#!/usr/bin/env bash
# AS RAN (call 6, the machine still warm from call 5, whose exports stayed in /tmp/bw/exports): DistilBERT at b=64 fp16,
# default, PDL on and the tanh GELU epilogue, then a per-step profile.
source bench/device/call-lib.sh 55; CLI=$WORK/cli/Batchwise.Cli; M=$WORK/exports/distilbert/model.onnx
for cfg in default pdl tanh; do
  envs="BATCHWISE_PDL=off"; [ $cfg = pdl ] && envs="BATCHWISE_PDL=on"; [ $cfg = tanh ] && envs="BATCHWISE_PDL=off BATCHWISE_GELU=tanh"
  q d-$cfg 12 env $envs "$CLI" bench "$M" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/d-$cfg.json"
done
q d-prof 15 "$CLI" bench "$M" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/d-prof.json"
pack
