#!/usr/bin/env bash
# Session 51, call 2 (~330 s; carry .device after staging .device1..4): L2 persistence for the plan's weights
# (BATCHWISE_L2_PERSIST, new, off by default). ResNet-50 fp16 at b=1 reads 51 MB of weights a run through a 50 MB L2,
# in the same order every run; with the setting a share of the L2 is set aside and every kernel of the CUDA graph gets an
# access-policy window over the weights. Against the default, in turn (each twice), runs queued 20 at a time:
#   ResNet-50 b=1 (issue 16's 4,000 img/s bar) and b=8, DistilBERT b=1 (132 MB of weights: a hit ratio below 1);
#   ResNet-50 b=1 with 16 MiB set aside (a smaller share).
# Then L2PersistenceGpuTests (bit for bit with and without) and the GPU classes of session 50's review commits
# (ee475d7 the kernel cache's per-function settings, 8b3313a Run = RunQueued(1)).
source bench/device/call-lib.sh "${CALL_SECONDS:-330}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models distilbert,resnet50 --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
run() { # run TAG MODEL BATCH ENV...
  local tag=$1 model=$2 b=$3 shape=(); shift 3
  case $model in bert|distilbert) shape=(--shape seq=128) ;; esac
  q $tag 30 env "$@" "$CLI" bench "$WORK/exports/$model/model.onnx" "${shape[@]}" --queue 20 --engine cuda --precision fp16 -b $b --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
  grep -h '^\[l2\]' "$R/$tag.txt" | sort -u | head -2 >> "$R/log.txt"
}
for round in 1 2; do
  run resnet50-b1-base-$round resnet50 1 BATCHWISE_L2_PERSIST=off
  run resnet50-b1-l2-$round resnet50 1 BATCHWISE_L2_PERSIST=on
done
run resnet50-b1-l2mib16 resnet50 1 BATCHWISE_L2_PERSIST=16
for round in 1 2; do
  run resnet50-b8-base-$round resnet50 8 BATCHWISE_L2_PERSIST=off
  run resnet50-b8-l2-$round resnet50 8 BATCHWISE_L2_PERSIST=on
  run distilbert-b1-base-$round distilbert 1 BATCHWISE_L2_PERSIST=off
  run distilbert-b1-l2-$round distilbert 1 BATCHWISE_L2_PERSIST=on
done
FIRST="L2PersistenceGpuTests ModelGpuTests SplitKConvGpuTests" CLASSES="L2PersistenceGpuTests ModelGpuTests SplitKConvGpuTests QueuedRunsGpuTests ProgrammaticLaunchGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 8 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
