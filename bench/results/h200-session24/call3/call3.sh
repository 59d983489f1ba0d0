#!/usr/bin/env bash
# Session 24, call 3 (main at .device/rev: the stem kernel pooling in registers; cli-base = 5f2192b's Batchwise.Cuda.dll,
# the stem as before): the stem's GPU classes and ModelGpuTests; ResNet-50 fp16 b=1/8/64/256 new vs base, alternating,
# one timing cache; Nsight Compute on the new stem at b=256; then explain's GPU error study (bench/explain-gpu.sh, zoo +
# five timm exports, fp16 and fp32, b=1..256) on whichever stem measured faster at b=256.
source bench/device/call-lib.sh 565
unpack tests base || { pack; exit 1; }
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
PEERS=resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="StemPoolGpuTests StemConvGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=110 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
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
  timeout "$(lim 60)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis --section InstructionStats --section SchedulerStats --csv --page details \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-stem256.csv" 2> "$R/ncu-stem256.log"
  t "ncu stem exit $? $(wc -l < "$R/ncu-stem256.csv") lines"
fi
X=$CLI; [ "$new" -ge "$base" ] || X=$BASE
t "explain study with $X"
CLI=$X OUT=$R/explain WORLD_EXPORTS=$WORK/exports PEERS=$PEERS BUDGET=$(( $(left) - 25 )) timeout "$(lim 400)" bash bench/explain-gpu.sh > "$R/explain.log" 2>&1
t "explain exit $? $(grep -ciE 'pass' "$R/explain/table.md" 2>/dev/null) pass lines"
rm -rf "$R/explain/cache"
pack
