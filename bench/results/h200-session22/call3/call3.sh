#!/usr/bin/env bash
# Session 22, call 3 (main at .device/rev, 9423a7f: the fused stem): Nsight Compute on the stem kernel at b=256 (what bounds
# it at 0.49 ms: tensor pipes, shared memory, stalls), ResNet-50 fp16 b=256 layer by layer with timed tactics (which layers
# the timed choice changes: --timed-tactics ran 5% slower in call 1), and the ResNet-50 / ResNeXt-50 peer rows.
source bench/device/call-lib.sh 420
unpack || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 170 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models resnet50,resnext50_32x4d --jobs 2 > "$R/exports.log" 2>&1 &
exports=$!
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  timeout "$(lim 90)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 2 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --csv --page details \
    "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-stem.csv" 2> "$R/ncu-stem.log"
  t "ncu stem exit $? $(wc -l < "$R/ncu-stem.csv") lines"
fi
q r50-timed-prof 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --timed-tactics --profile --json "$R/r50-timed-prof.json"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
timeout "$(lim 150)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models resnet50,resnext50_32x4d --torch-windows 5 --torch-window-seconds 0.4 --jobs 2 --budget 140 > "$R/world.log" 2>&1
t "world exit $? $(grep -cE '^\|' "$R/world/world.md" 2>/dev/null) table lines"
pack
