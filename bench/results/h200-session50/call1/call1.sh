#!/usr/bin/env bash
# Session 50, call 1 (~250 s; carry .device after staging .device1..4): where the small kernels' boundaries go. DistilBERT
# b=64's profile (session 49) has generated kernels of no work costing 4-6 us each beside the products (the flagged
# attention kernel 6.2 us a layer, the mask's Flatten 4.3, the lengths kernel 5.1). Two launch settings, alone and
# together, against the default, in turn (the default and the queue twice):
#   pdl     BATCHWISE_PDL=on (generated kernels scheduled while the kernel before them ends)
#   carve   BATCHWISE_SMEM_CARVEOUT=max (every generated kernel prefers the largest shared-memory split, as the
#           libraries' kernels around it run, so no boundary changes the split)
#   queue   the default with bench --queue 20 (runs back to back on the stream, as PyTorch's graph replays are timed)
# on DistilBERT b=64 (seq 128) and ResNet-50 b=1 (issue 16's 4,000 img/s bar). Then the review
# commits' GPU classes (116e301, 1a7830a, 8729b5c: attention timing and the flagged kernel) and the queue's.
source bench/device/call-lib.sh "${CALL_SECONDS:-250}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,resnet50 --jobs 3 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
run() { # run TAG MODEL BATCH ENV... (QARGS="--queue N" before it: runs enqueued back to back)
  local tag=$1 model=$2 b=$3 shape=(); shift 3
  case $model in bert|distilbert) shape=(--shape seq=128) ;; esac
  q $tag 30 env "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" "${shape[@]}" ${QARGS:-} --engine cuda --precision fp16 -b $b --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for mb in distilbert:64 resnet50:1; do
  m=${mb%:*} b=${mb#*:}
  run $m-base-1 $m $b BATCHWISE_PDL=off
  QARGS="--queue 20" run $m-queue-1 $m $b BATCHWISE_PDL=off
  run $m-pdl-1 $m $b BATCHWISE_PDL=on
  if [ $m = distilbert ]; then
    run $m-carve-1 $m $b BATCHWISE_SMEM_CARVEOUT=max
    run $m-both-1 $m $b BATCHWISE_PDL=on BATCHWISE_SMEM_CARVEOUT=max
  fi
  run $m-base-2 $m $b BATCHWISE_PDL=off
  QARGS="--queue 20" run $m-queue-2 $m $b BATCHWISE_PDL=off
done
run bert-base-1 bert 64 BATCHWISE_PDL=off
QARGS="--queue 20" run bert-queue-1 bert 64 BATCHWISE_PDL=off
q distilbert-prof 20 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distilbert-prof.json"
FIRST="QueuedRunsGpuTests CudnnAttentionGpuTests AttentionGpuTests" CLASSES="QueuedRunsGpuTests CudnnAttentionGpuTests AttentionGpuTests ModelGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
