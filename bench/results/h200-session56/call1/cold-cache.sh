#!/usr/bin/env bash
# Prepared in session 55, run in session 56 as call 1 (CALL_SECONDS=160; carry .device after staging): is a model's first bench
# process on a machine slower at b=1 than the next one? Session 55's calls 1 and 3 saw ViT-S and ConvNeXt-T b=1 10-11%
# slower in the first process (prepare 2.1-2.4 s, tactics timed) than in the second (0.59 s, from the timing cache), same
# steps, same clock. Each model twice on a fresh cache, each run's per-step profile (--profile: CUDA events layer by
# layer), then a third time after copying the cache away (the kernel cache alone warm), so the step that differs shows.
source bench/device/call-lib.sh "${CALL_SECONDS:-150}"
unpack || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models vit_small_patch16_224 --jobs 2 > "$R/exports.log" 2>&1
for model in "$WORK/exports/vit_small_patch16_224/model.onnx" zoo:resnet50; do
  tag=$(basename "$(dirname "$model")"); [ "$model" = zoo:resnet50 ] && tag=resnet50
  export BATCHWISE_CACHE_DIR=$WORK/cache-$tag
  rm -rf "$BATCHWISE_CACHE_DIR"
  for run in 1 2; do
    q $tag-run$run 30 "$CLI" bench "$model" --engine cuda --precision fp16 -b 1 --queue 20 --duration 0.5s --warmup 0.3s --max-windows 3 --profile --json "$R/$tag-run$run.json"
  done
  # The timing cache away, the kernel cache kept: which of the two caches the difference follows.
  rm -f "$BATCHWISE_CACHE_DIR"/cuda/tactics-*.json
  q $tag-run3-notimings 30 "$CLI" bench "$model" --engine cuda --precision fp16 -b 1 --queue 20 --duration 0.5s --warmup 0.3s --max-windows 3 --profile --json "$R/$tag-run3.json"
  ls -R "$BATCHWISE_CACHE_DIR" > "$R/$tag-cache.txt" 2>&1
done
pack
