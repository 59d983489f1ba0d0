#!/usr/bin/env bash
# Session 18, call 2 (code of .device/rev = 8a52ef7): issue 11's checks from the final engine code: the 21 GPU test
# classes with ONNX's node cases; ResNet-50 fp16 at the fixed shapes against phase 1 (b8b556f overlay) in the same call;
# then Nsight Compute's kernel times of MobileNetV2 fp16 at b=1 for 0e38f5a (this build) and 114d158 (flat overlay):
# call 1 measured 0e38f5a 8% slower at b=1 and 6-7% faster at b=64/256.
source bench/device/call-lib.sh 565
unpack tests base old node || { pack; exit 1; }
CLASSES="ShapeGpuTests ModelGpuTests BranchesGpuTests StagedGpuTests PipelinedStagedGpuTests TransferGpuTests SmallRowsGpuTests DataDependentGpuTests AttentionGpuTests MlpGpuTests GroupedConvGpuTests PointwiseConvGpuTests QuantizedModelGpuTests KernelCaseGpuTests KernelCompileTests TelemetryGpuTests PlanThreadsGpuTests CeilingsGpuTests OperatorGpuTests NodeGpuTests OperatorCaseGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 170 )) BATCHWISE_ONNX_NODE_TESTS=$NODE bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q warm-new 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s --max-windows 3
q warm-old 30 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s --max-windows 3
q fixed-new 45 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-new.json"
q fixed-old 45 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-old.json"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  for which in new base; do
    exe=$CLI; [ $which = base ] && exe=$BASE
    timeout "$(lim 40)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 80 --section SpeedOfLight --section LaunchStats --csv --page details \
      "$exe" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-m2-b1-$which.csv" 2> "$R/ncu-m2-b1-$which.log"
    t "ncu m2 b=1 $which exit $? $(wc -l < "$R/ncu-m2-b1-$which.csv") lines"
  done
fi
pack
