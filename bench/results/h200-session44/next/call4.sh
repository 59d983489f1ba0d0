#!/usr/bin/env bash
# Call 4 (build of BATCHWISE_ATTENTION_WARP_ROWS, base = 6746627's Batchwise.Cuda.dll): DistilBERT / BERT b=64 and b=1
# (seq 128): base, the new default (16 rows a warp, the generalised source), 32 rows a warp, 32 rows a warp with launch
# bounds of 2 and 3 blocks; AttentionGpuTests; Nsight Compute on DistilBERT b=64's kernels with 32 rows a warp.
source bench/device/call-lib.sh 570
unpack tests base || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert,bert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | tr '\n' ' ')"
B="--shape seq=128 --engine cuda --precision fp16 --duration 0.5s --warmup 0.3s --max-windows 3"
for round in 1 2; do
  for m in distilbert bert; do
    q $m-base-b64-$round 30 "$BASE" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-base-b64-$round.json"
    q $m-new-b64-$round 30 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-new-b64-$round.json"
    q $m-w32-b64-$round 30 env BATCHWISE_ATTENTION_WARP_ROWS=32 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-w32-b64-$round.json"
    q $m-w32mb2-b64-$round 30 env BATCHWISE_ATTENTION_WARP_ROWS=32 BATCHWISE_ATTENTION_MIN_BLOCKS=2 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-w32mb2-b64-$round.json"
    q $m-w32mb3-b64-$round 30 env BATCHWISE_ATTENTION_WARP_ROWS=32 BATCHWISE_ATTENTION_MIN_BLOCKS=3 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b 64 --json "$R/$m-w32mb3-b64-$round.json"
    q $m-base-b1-$round 30 "$BASE" bench "$WORK/exports/$m/model.onnx" $B -b 1 --json "$R/$m-base-b1-$round.json"
    q $m-w32-b1-$round 30 env BATCHWISE_ATTENTION_WARP_ROWS=32 "$CLI" bench "$WORK/exports/$m/model.onnx" $B -b 1 --json "$R/$m-w32-b1-$round.json"
  done
done
q distil-prof-w32 20 env BATCHWISE_ATTENTION_WARP_ROWS=32 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distil-prof-w32.json"
q attention-tests 60 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.AttentionGpuTests
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /usr/local/cuda-*/bin/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] && timeout "$(lim 100)" env BATCHWISE_ATTENTION_WARP_ROWS=32 "$NCU" --clock-control none --cache-control none --graph-profiling node --launch-skip 300 --launch-count 45 \
    --section LaunchStats --section Occupancy --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis \
    --csv --page details "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.05s --warmup 0.02s --max-windows 3 > "$R/ncu-w32.csv" 2> "$R/ncu-w32.log"
t "ncu w32 exit $?"
pack
