#!/usr/bin/env bash
# Session 20, call 4 (main at .device/rev; its engine code is 4e96de2's, whose attention, MLP, model, node, kernel-case
# and operator GPU classes passed in call 1): the GPU classes call 1 did not run that the change can reach (Gather,
# products, Expand: shapes, data-dependent, operator cases, branches, small rows, transfers), then issue 16's peer table
# for the attention models and ResNet-50 (b=1 and 64, PyTorch's best in the same run, 5 windows of 0.4 s).
source bench/device/call-lib.sh 560
unpack tests node || { pack; exit 1; }
timeout 200 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R" \
  --models bert,distilbert,gpt2,vit-hf,vit_small_patch16_224,deit_small_patch16_224,swin_tiny_patch4_window7_224,mobilevit_s,t5-encoder,llama,resnet50 --jobs 6 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="ShapeGpuTests DataDependentGpuTests BranchesGpuTests SmallRowsGpuTests TransferGpuTests OperatorCaseGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=170 BATCHWISE_ONNX_NODE_TESTS=$NODE bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports; t "exports: $(grep -c ': ok' "$R/exports.log") ok"
timeout "$(lim 360)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models bert,distilbert,gpt2,vit-hf,vit_small_patch16_224,deit_small_patch16_224,swin_tiny_patch4_window7_224,mobilevit_s,t5-encoder,llama,resnet50 \
  --torch-windows 5 --torch-window-seconds 0.4 --jobs 6 --budget 340 --profile-worst 1 > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\| " "$R/world/world.md" | cut -c1-200 >> "$R/log.txt"
pack
