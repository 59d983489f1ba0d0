#!/usr/bin/env bash
# Session 58 (CALL_SECONDS, default 280; carry .device after staging): where ResNet-50 fp16's b=1 time goes (issue 16's
# 4,000 img/s; 3,359 in session 56). bench at b=1 twice, runs queued 20 at a time (the GPU never waits for the host);
# b=256 once (its 45,000 bar); the b=1 run with two runs in flight (-c 2: what a server with two executions gets at b=1, NOT the single-stream bar);
# then Nsight Compute's duration of every kernel of the plan's replayed graph (node by node, clocks left alone) after a
# run that fills the tactic cache, so the last 55 of 400 kernels are a steady-state run: their sum against the graph's
# time a run is the share the gaps between kernels take. Last, ViT-S b=8's per-step profile.
source bench/device/call-lib.sh "${CALL_SECONDS:-280}"
unpack || { pack; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader >> "$R/log.txt"
r50() { local tag=$1; shift; q "$tag" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --queue 20 --duration 0.6s --warmup 0.3s "$@" --json "$R/$tag.json"; }
r50 r50-1-a -b 1
r50 r50-1-b -b 1
r50 r50-1-c2 -b 1 -c 2
r50 r50-256 -b 256
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  timeout "$(lim 120)" "$NCU" --clock-control none --graph-profiling node --launch-count 400 \
    --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum \
    --csv --page raw "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.03s --warmup 0.01s --max-windows 3 > "$R/ncu-r50-1.csv" 2> "$R/ncu-r50-1.log"
  t "ncu exit $? $(wc -l < "$R/ncu-r50-1.csv") lines"
  xz -9 "$R/ncu-r50-1.csv"
else
  t "no ncu on this machine"
fi
# ViT-S at b=8 (exported by the table's call on this warm machine): whether its MLP's GELU products, left to cuBLASLt
# below a tile a multiprocessor, are a lever (session 57's kernel probe: the own kernel 11.2 us on 78 SMs).
VITS=$WORK/exports/vit_small_patch16_224/model.onnx
# Then b=4 and b=8 (42 and 78 tiles) with BATCHWISE_GELU_PRODUCT_TILES=32 (the own kernel takes them) against the
# default (the library's product, then the GELU pass), in turn, twice, runs queued 20 at a time.
if [ -f "$VITS" ] && (( $(left) > 40 )); then
  q vits-8-prof 30 "$CLI" bench "$VITS" --engine cuda --precision fp16 -b 8 --profile --duration 0.3s --json "$R/vits-8-prof.json"
  q vits-8-prof-t32 30 env BATCHWISE_GELU_PRODUCT_TILES=32 "$CLI" bench "$VITS" --engine cuda --precision fp16 -b 8 --profile --duration 0.3s --json "$R/vits-8-prof-t32.json"
  for round in 1 2; do
    for b in 4 8; do
      q vits-$b-default-$round 20 "$CLI" bench "$VITS" --engine cuda --precision fp16 -b $b --queue 20 --duration 0.6s --warmup 0.3s --max-windows 3 --json "$R/vits-$b-default-$round.json"
      q vits-$b-t32-$round 20 env BATCHWISE_GELU_PRODUCT_TILES=32 "$CLI" bench "$VITS" --engine cuda --precision fp16 -b $b --queue 20 --duration 0.6s --warmup 0.3s --max-windows 3 --json "$R/vits-$b-t32-$round.json"
    done
  done
fi
pack
