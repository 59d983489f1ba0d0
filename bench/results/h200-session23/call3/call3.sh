#!/usr/bin/env bash
# Session 23, call 3 (main at .device/rev): the GPU classes calls 1-2 did not run (the int8 ones, the operator cases,
# StemConv with the fused stem off), and explain on the rows the explain change (652ddf7) targets: ResNet-50/18 fp16
# (the fused stem) and EfficientNet-B0 fp16 (squeeze-excite means), with the ceilings measured afresh.
source bench/device/call-lib.sh 440
unpack tests || { pack; exit 1; }
mkdir -p "$R/exports" "$R/explain"
timeout 150 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models efficientnet_b0 --jobs 1 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="StemConvGpuTests QuantizedModelGpuTests Int8LayerGpuTests Int8ModelGpuTests Int8PrecisionGpuTests Int8ChildGpuTests Int8ResidualFusionGpuTests CudaSharedMemoryGpuTests OperatorCaseGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=110 DEADLINE=280 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports
export BATCHWISE_CACHE_DIR=$R/explain/cache
timeout "$(lim 80)" "$CLI" devices --ceilings --recalibrate -v > "$R/explain/ceilings.txt" 2>&1; t "ceilings exit $?"
X="--engine cuda --precision fp16 -b 1,2,4,8,16,32,64,128,256 --duration 300ms"
q explain-r50 40 "$CLI" explain zoo:resnet50 $X --json "$R/explain/resnet50-fp16.json"
q explain-r18 30 "$CLI" explain zoo:resnet18 $X --json "$R/explain/resnet18-fp16.json"
q explain-effnet 40 "$CLI" explain "$WORK/exports/efficientnet_b0/model.onnx" $X --json "$R/explain/efficientnet_b0-fp16.json"
rm -rf "$R/explain/cache/kernels"
pack
