#!/usr/bin/env bash
# Session 25, call 2 (main at .device/rev, 9583d5f: the own int8 convolution kernel, first time on a GPU): its GPU test
# and the int8 model tests it changes; ResNet-50 int8 (QDQ, optimize --int8) at b=1/64/256 with the own kernel where its
# tiles fill the device (the default) and a per-layer profile at b=256, fp16 in the same call; compare against ONNX
# Runtime with the own kernel everywhere; Nsight Compute on the own kernels at b=256; every kernel's duration of zoo:bert
# b=1 right after a timed plan build (cold) and from the timing cache (warm): the 8% cold-build slowdown of call 1.
source bench/device/call-lib.sh 560
unpack tests || { pack; exit 1; }
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
CLASSES="Int8ConvGpuTests Int8ResidualFusionGpuTests QuantizedModelGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=190 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q r50q-opt 40 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q r50q-256 60 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 400ms --json "$R/r50q-256.json"
q r50-256 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 256 --duration 400ms --json "$R/r50-256.json"
q r50q-b 90 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,64,256 --duration 400ms --json "$R/r50q-b.json"
q r50q-cmp 60 env BATCHWISE_INT8=on BATCHWISE_INT8_CONV=own "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 32
if [ -n "$NCU" ]; then
  timeout "$(lim 70)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 40 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --csv --page details \
    $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-int8.csv" 2> "$R/ncu-int8.log"
  t "ncu int8 exit $? $(wc -l < "$R/ncu-int8.csv") lines"
  C=$(mktemp -d)
  for phase in cold warm; do
    timeout "$(lim 60)" env BATCHWISE_CACHE_DIR=$C "$NCU" --clock-control none --graph-profiling node --launch-skip 20000 --launch-count 300 --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size --csv \
      "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-bert-$phase.csv" 2> "$R/ncu-bert-$phase.log"
    t "ncu bert $phase exit $? $(wc -l < "$R/ncu-bert-$phase.csv") lines"
  done
fi
pack
