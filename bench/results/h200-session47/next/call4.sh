#!/usr/bin/env bash
# PREPARED, NOT RUN (for the next session, first call; ~250 s): session 47's final code on the GPU before the peer table.
# cuDNN's attention probe now times every configuration heuristics offer at BERT's shape (629680b: does a later one close
# the gap from the model's 26.6 us a layer to the 18.5 us PyTorch's cuDNN run took?); BERT's and DistilBERT's per-step
# profiles at b=64 (c6ca3a8: DistilBERT's word Gather read through its ids, one mask kernel fewer); GPT-2 and Llama at
# b=64 under auto (1f71bcb: the own kernel for a bias per query) against cudnn; AttentionGpuTests, CudnnAttentionGpuTests,
# ModelGpuTests. Then the peer table on the same warm machine: CALL_SECONDS=560 bash bench/device/world-call.sh.
source bench/device/call-lib.sh "${CALL_SECONDS:-300}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 100 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,gpt2,llama --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
q cudnn-probe 60 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CudnnAttentionGpuTests
grep -E "configuration|Total:" "$R"/cudnn-probe.txt "$R"/*.md 2>/dev/null | grep -E "us \||Total" | head -20 >> "$R/log.txt"
for m in gpt2 llama; do
  for a in auto cudnn; do
    q $m-$a-b64 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b64.json"
  done
done
for m in bert distilbert; do
  q $m-prof 25 "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/$m-prof.json"
done
FIRST="AttentionGpuTests ModelGpuTests" CLASSES="AttentionGpuTests ModelGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
