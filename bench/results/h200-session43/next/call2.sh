#!/usr/bin/env bash
# AS RAN in call 2 (carry .device): CeilingsGpuTests (its pointwise, conv-s2 and further-N GEMM assertions, not
# yet run on a GPU), then ResNet-50 fp16 b=1 under Nsight Compute with the caches kept (bench/device/b1-ncu-call.sh's
# steps, default plan only) and its rate with PDL on.
source bench/device/call-lib.sh "${CALL_SECONDS:-420}"
unpack tests || { pack; exit 1; }
CLASSES="CeilingsGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=200 DEADLINE=210 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q warm 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --json "$R/warm.json"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /usr/local/cuda-*/bin/ncu 2>/dev/null | head -1)
t "ncu: ${NCU:-none}"
if [ -n "$NCU" ]; then
  timeout "$(lim 120)" env BATCHWISE_PDL=on "$NCU" --clock-control none --cache-control none --graph-profiling node --launch-skip 200 --launch-count 300 \
    --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread \
    --csv --page raw "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.05s --warmup 0.02s --max-windows 3 > "$R/ncu-default.csv" 2> "$R/ncu-default.log"
  t "ncu default exit $? $(wc -l < "$R/ncu-default.csv") lines"
  xz -9 "$R/ncu-default.csv"
fi
for i in 1 2; do
  q default-$i 30 env BATCHWISE_PDL=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 1s --json "$R/default-$i.json"
done
q prof 40 env BATCHWISE_PDL=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --profile --json "$R/prof.json"
pack
