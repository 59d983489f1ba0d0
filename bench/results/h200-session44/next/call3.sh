#!/usr/bin/env bash
# Call 3 (build a7d7972, base = 6746627's Batchwise.Cuda.dll): the attention kernel with its own query tile and two key
# tiles in flight, against the old one, at DistilBERT / BERT b=64 and b=1 (seq 128), alternating; the launch-bounds
# experiment (BATCHWISE_ATTENTION_MIN_BLOCKS=4); a per-step profile; Nsight Compute on one forward's kernels (DistilBERT
# b=64, launch, occupancy, speed-of-light and warp-state sections); AttentionGpuTests.
source bench/device/call-lib.sh 570
unpack tests base || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | tr '\n' ' ')"
B="--shape seq=128 --engine cuda --precision fp16 --duration 0.5s --warmup 0.3s --max-windows 3"
for round in 1 2; do
  for m in distilbert bert; do
    for b in 64 1; do
      q $m-base-b$b-$round 30 "$BASE" bench "$WORK/exports/$m/model.onnx" $B -b $b --json "$R/$m-base-b$b-$round.json"
      q $m-new-b$b-$round 30 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b $b --json "$R/$m-new-b$b-$round.json"
    done
  done
  q distilbert-mb4-b64-$round 30 env BATCHWISE_ATTENTION_MIN_BLOCKS=4 "$CLI" bench "$WORK/exports/distilbert/model.onnx" $B -b 64 --json "$R/distilbert-mb4-b64-$round.json"
done
q distil-prof-new 20 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distil-prof-new.json"
q attention-tests 60 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.AttentionGpuTests
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /usr/local/cuda-*/bin/ncu 2>/dev/null | head -1)
for which in new base; do
  exe=$CLI; [ $which = base ] && exe=$BASE
  [ -n "$NCU" ] && timeout "$(lim 100)" "$NCU" --clock-control none --cache-control none --graph-profiling node --launch-skip 300 --launch-count 45 \
    --section LaunchStats --section Occupancy --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis \
    --csv --page details "$exe" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.05s --warmup 0.02s --max-windows 3 > "$R/ncu-$which.csv" 2> "$R/ncu-$which.log"
  t "ncu $which exit $? $(wc -l < "$R/ncu-$which.csv") lines"
done
pack
