#!/usr/bin/env bash
# Session 38, call 1: where ResNet-50 fp16's b=1 time goes (issue 16's 4,000 img/s bar; ~3,160 on an H100): bench at b=1
# twice, the per-step profile (events between steps, the GPU's times), and Nsight Compute's duration, grid and registers
# of every kernel of steady-state runs (clocks not locked); then the GPU classes session 37 left unrun on the final build.
source bench/device/call-lib.sh 480
unpack tests node || { pack; exit 1; }
f16() { q "$1" 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b "$2" --duration 400ms --json "$R/$1.json"; }
f16 r50-1-a 1; f16 r50-1-b 1
q r50-1-prof 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --profile --json "$R/r50-1-prof.json"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  timeout "$(lim 90)" "$NCU" --clock-control none --graph-profiling node --launch-count 1500 \
    --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic,dram__bytes_read.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed \
    --csv --page raw "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.05s --warmup 0.02s --max-windows 1 > "$R/ncu-r50-1.csv" 2> "$R/ncu-r50-1.log"
  t "ncu exit $? $(wc -l < "$R/ncu-r50-1.csv") lines"
  xz -9 "$R/ncu-r50-1.csv"
fi
FIRST="Int8LayerGpuTests Int8PointwiseGpuTests Int8ModelGpuTests Int8PrecisionGpuTests NodeGpuTests"
BATCHWISE_ONNX_NODE_TESTS=$NODE CLASSES="$FIRST" LIMITS="Int8PointwiseGpuTests=150 Int8ModelGpuTests=120 NodeGpuTests=100" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
