#!/usr/bin/env bash
# Session 47 call 2 (after the peer table, on the same warm machine: its exports reused; af31fae): what the table does not
# say. Own against the default (auto: cuDNN at b=64) at b=64 on BERT, DistilBERT, GPT-2 and Llama, one round; each plan's
# steps; BERT's and DistilBERT's per-step profiles at b=64 (the embeddings now one kernel, the cuDNN attention with the
# per-key bias after f708f44); AttentionGpuTests and ModelGpuTests (the zoo's BERT runs the embedding kernel in fp32 and
# fp16 against ONNX Runtime).
source bench/device/call-lib.sh "${CALL_SECONDS:-300}"
unpack tests || { pack; exit 1; }
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l)"
for m in bert distilbert gpt2 llama; do
  for a in own auto; do
    q $m-$a-b64 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b64.json"
  done
done
for f in "$R"/*-b64.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], [b['steps'] for p in d['points'] for b in p.get('plan_builds', [])])" "$f" >> "$R/log.txt" 2>&1; done
q bert-prof 25 "$CLI" bench "$WORK/exports/bert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/bert-prof.json"
q distilbert-prof 25 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distilbert-prof.json"
FIRST="AttentionGpuTests ModelGpuTests CudnnAttentionGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=100 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
