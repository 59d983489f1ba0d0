#!/usr/bin/env bash
# Session 24, call 4 (main at .device/rev: the stem kernel with the step before's row in shared memory, not spilled
# registers; cli-base = 5f2192b's Batchwise.Cuda.dll): the stem's GPU classes; ResNet-50 fp16 b=1/8/64/256 new vs base,
# alternating, one timing cache; Nsight Compute on the new stem; then issue 16's peer table, all 19 models against
# PyTorch's best in one run (world.py), with whichever stem measured faster at b=256. The 19 exports run in the
# background meanwhile (CPU only).
source bench/device/call-lib.sh 575
unpack tests base || { pack; exit 1; }
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
mkdir -p "$R/exports"
timeout 330 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --jobs 8 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="StemPoolGpuTests StemConvGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=40 DEADLINE=60 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
B="bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256"
q r50-new-cold 80 "$CLI" $B --json "$R/r50-new-cold.json"
for i in 1 2; do
  q r50-base-$i 40 "$BASE" $B --json "$R/r50-base-$i.json"
  q r50-new-$i 40 "$CLI" $B --json "$R/r50-new-$i.json"
done
row256() { grep -E '│ +256( knee)? +│' "$R/$1.txt" | awk -F'│' '{gsub(/[ ,]/,"",$4); print $4+0}'; }
new=$(( $(row256 r50-new-1) + $(row256 r50-new-2) )); base=$(( $(row256 r50-base-1) + $(row256 r50-base-2) ))
t "b=256 new $new base $base (two runs each, summed)"
if [ -n "$NCU" ]; then
  timeout "$(lim 40)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis --section InstructionStats --section SchedulerStats --csv --page details \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-stem256.csv" 2> "$R/ncu-stem256.log"
  t "ncu stem exit $? $(wc -l < "$R/ncu-stem256.csv") lines"
fi
X=$CLI; [ "$new" -ge "$base" ] || X=$BASE
wait $exports
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models; peer table with $X"
timeout "$(lim 420)" python3 bench/peers/world.py --cli "$X" --python python3 --out "$R/world" --work "$WORK/exports" \
  --jobs 6 --budget $(( $(left) - 25 )) > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
pack
