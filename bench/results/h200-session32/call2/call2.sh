#!/usr/bin/env bash
# Session 32, call 2 — PREPARED, NOT RUN (no device machine was lent in session 32). What bounds the int8 1x1 block
# ends of ResNet-50 (issue 19: 16 residual ends ~1.7 of ~4.1 ms at b=256, 1.4-2.3 TB/s, against fp16's cuBLASLt at ~4 TB/s
# with twice the bytes): Nsight Compute on the own int8 kernels (stall reasons, issue use, DRAM throughput), the
# pointwise kernel with three tiles in flight again (session 27 measured 2/3/4 stages before the requantization was
# halved, when the kernel was bound by its instructions) and built for three resident blocks an SM (session 32,
# BATCHWISE_INT8_POINTWISE_BLOCKS=3, never run on a GPU), and whether explain's b=1 over-predictions (BERT fp16 +42%,
# ViT-S fp32 +43%) are a measurement of a cold start (a long warm-up against the default, a warm timing cache against a
# cold one). About 400 s on an H200.
source bench/device/call-lib.sh 545
unpack tests || { pack; exit 1; }
I8="env BATCHWISE_INT8=on"
q r50qs-opt 25 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --int8-activations symmetric --no-verify -o "$WORK/r50qs.onnx"
# The plans' timing cache warmed first, so the profiles below time nothing while they run.
q r50qs 60 $I8 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 1,256 --duration 300ms --json "$R/r50qs.json"
q r50qs-prof2 40 $I8 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/r50qs-prof2.json"
q r50qs-prof3 40 env BATCHWISE_INT8=on BATCHWISE_INT8_POINTWISE_STAGES=3 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/r50qs-prof3.json"
# Three resident blocks an SM (24 warps instead of 16; 85 registers a thread) on the 64- and 128-channel block ends.
q r50qs-profb3 40 env BATCHWISE_INT8=on BATCHWISE_INT8_POINTWISE_BLOCKS=3 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 200ms --json "$R/r50qs-profb3.json"
q r50qs-b3 40 env BATCHWISE_INT8=on BATCHWISE_INT8_POINTWISE_BLOCKS=3 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50qs-b3.json"
q r50qs-again 40 $I8 "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --duration 300ms --json "$R/r50qs-again.json"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  # Every own kernel (bw_*) of the first runs, one replay each: the CSV names each by its hash with grid and block
  # sizes; the plan listing in r50qs-prof2.txt gives which layer each is (the pointwise kernel: 256 threads, 264 blocks).
  timeout "$(lim 150)" "$NCU" --clock-control none --graph-profiling node --kernel-name regex:^bw_ --launch-count 120 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section InstructionStats --csv --page details \
    env BATCHWISE_INT8=on "$CLI" bench "$WORK/r50qs.onnx" --engine cuda --precision fp16 -b 256 --duration 0.1s --warmup 0.05s --max-windows 3 \
    > "$R/ncu-r50qs.csv" 2> "$R/ncu-r50qs.log"
  t "ncu exit $? $(wc -l < "$R/ncu-r50qs.csv") lines"
else
  t "no ncu on this machine"
fi
# explain's b=1 rows: a cold cache and the default warm-up (as explain's sweep: 0.1 s) against a warm cache and 3 s, the
# SM clock, temperature and power sampled every 100 ms alongside (a cold build's timing runs could leave the clocks lower).
nvidia-smi --query-gpu=timestamp,clocks.sm,temperature.gpu,power.draw,clocks_event_reasons.active --format=csv -lms 100 > "$R/clocks.csv" 2>&1 &
smi=$!
export BATCHWISE_CACHE_DIR=$WORK/cold1
q bert-cold 40 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --warmup 0.1s --duration 300ms --json "$R/bert-cold.json"
q bert-warm 40 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --warmup 0.1s --duration 300ms --json "$R/bert-warm.json"
q bert-long 40 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --warmup 3s --duration 1s --json "$R/bert-long.json"
export BATCHWISE_CACHE_DIR=$WORK/cold2
q bert-cold-long 40 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1 --warmup 3s --duration 1s --json "$R/bert-cold-long.json"
kill $smi 2>/dev/null
# The probe's GEMM rates replay one call on the same weights (L2-resident); a model's weights beyond L2 come from DRAM.
timeout "$(lim 60)" python3 bench/explain-cold-weights.py --out "$R/cold-weights.md" > "$R/cold-weights.txt" 2>&1; t "cold weights exit $?"
# The pointwise kernel's registers and local memory built for two and for three blocks an SM.
CLASSES="Int8PointwiseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
