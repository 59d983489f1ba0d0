#!/usr/bin/env bash
# Session 21, call 4 (main at .device/rev: split-K by default where 8 splits fill the device; explain's grouped-s2 and
# dip-keeping rate tables): the GPU classes the split-K planner or the shared own-conv epilogue reach, then the explain
# error study at every batch 1..256 (fp16 and fp32, the zoo and five peers exported here meanwhile).
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
timeout 200 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016 --jobs 5 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="SplitKConvGpuTests ModelGpuTests ShapeGpuTests GroupedConvGpuTests PointwiseConvGpuTests QuantizedModelGpuTests StagedGpuTests PipelinedStagedGpuTests KernelCompileTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=70 DEADLINE=230 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
CLI=$CLI OUT=$R/explain-study WORLD_EXPORTS=$WORK/exports BUDGET=$(( $(left) - 25 )) bash bench/explain-gpu.sh > "$R/explain-study.log" 2>&1
t "explain study exit $? $(tail -1 "$R/explain-study/table.md")"
pack
