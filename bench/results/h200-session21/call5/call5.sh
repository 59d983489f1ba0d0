#!/usr/bin/env bash
# Session 21, call 5 (main at .device/rev, the engine code of call 4): the peer rows the split-K default can reach at b=1
# (resnet50, convnext_tiny, mobilevit_s, densenet121; b=1 and 64 against PyTorch's best in the same run), ResNet-50 fp16
# at b=1/64/256 with and without split-K, per-layer profiles of explain's failing runs (layers.csv beside each), and
# QuantizedModelGpuTests with the time it needs.
source bench/device/call-lib.sh 430
unpack tests || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 170 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R/exports" --models resnet50,convnext_tiny,mobilevit_s,densenet121,efficientnet_b0,regnetx_016 --jobs 6 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="QuantizedModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=150 DEADLINE=160 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
wait $exports
t "exports: $(ls "$R"/exports/export-*.json 2>/dev/null | wc -l) written"
B="bench zoo:resnet50 --engine cuda --precision fp16"
q r50-auto 40 "$CLI" $B -b 1,64,256 --json "$R/r50-auto.json"
q r50-off 40 env BATCHWISE_SPLITK_CONV=off "$CLI" $B -b 1,64,256 --json "$R/r50-off.json"
timeout "$(lim 190)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models resnet50,convnext_tiny,mobilevit_s,densenet121 --torch-windows 5 --torch-window-seconds 0.4 --jobs 4 --budget 180 > "$R/world.log" 2>&1
t "world exit $? $(grep -cE '^\|' "$R/world/world.md" 2>/dev/null) table lines"
q prof-bert16-b8 20 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 8 --profile --json "$R/prof-bert16-b8.json"
q prof-effnet16-b4 20 "$CLI" bench "$WORK/exports/efficientnet_b0/model.onnx" --engine cuda --precision fp16 -b 4 --profile --json "$R/prof-effnet16-b4.json"
q prof-regnetx16-b256 25 "$CLI" bench "$WORK/exports/regnetx_016/model.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/prof-regnetx16-b256.json"
q prof-r18fp32-b1 20 "$CLI" bench zoo:resnet18 --engine cuda -b 1 --profile --json "$R/prof-r18fp32-b1.json"
t done
pack
