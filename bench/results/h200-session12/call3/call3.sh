#!/usr/bin/env bash
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli"
rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
# b=1: what makes today's build slower than phase 1's at b=1 (same run, per-layer profiles)
b1() { timeout 40 "$@" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 1s --warmup 0.3s --profile --json "$R/b1-$tag.json" > "$R/b1-$tag.txt" 2>&1; t "b1 $tag exit $? $(grep -E '│ +1 │' "$R/b1-$tag.txt" | head -1 | tr -s ' ' | cut -c1-60)"; }
tag=new1 b1 "$CLI"; tag=old1 b1 "$OLD"
tag=pw-cudnn BATCHWISE_POINTWISE_CONV=cudnn b1 "$CLI"
tag=stem-cudnn BATCHWISE_STEM_CONV=cudnn b1 "$CLI"
tag=both-cudnn BATCHWISE_POINTWISE_CONV=cudnn BATCHWISE_STEM_CONV=cudnn b1 "$CLI"
tag=new2 b1 "$CLI"; tag=old2 b1 "$OLD"
timeout 60 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
export BATCHWISE_INT8_TRACE=1 BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on
timeout 120 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --verbose --profile --json "$R/r50q-t1.json" > "$R/r50q-t1.txt" 2>&1
t "int8 timed b=256 first process exit $? $(grep -E '│ +256 │' "$R/r50q-t1.txt" | head -1 | tr -s ' ' | cut -c1-60)"
timeout 90 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,64,256 --json "$R/r50q-t2.json" > "$R/r50q-t2.txt" 2>&1
t "int8 second process exit $?"
timeout 60 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 8 > "$R/r50q-compare.txt" 2>&1
t "int8 compare exit $?"
unset BATCHWISE_INT8_TRACE BATCHWISE_INT8 BATCHWISE_INT8_GRAPH
timeout 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,64,256 --json "$R/fp16-ref.json" > "$R/fp16-ref.txt" 2>&1
t "fp16 reference exit $?"
left=$(( 275 - ($(date +%s) - start) ))
if [ $left -gt 60 ]; then
  timeout $left python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" --budget $(( left - 10 )) --models vit_small_patch16_224,deit_small_patch16_224 > "$R/world.log" 2>&1
  t "world exit $?"
fi
