#!/usr/bin/env bash
# Call 1 (build e861c403): BATCHWISE_ATTENTION=cudnn (cuDNN's fused attention as a plan step) against the own kernel at
# b=64 on BERT, DistilBERT, ViT-S and HF ViT (two rounds, alternating) and at b=1 on BERT and ViT-S; AttentionGpuTests
# (its cuDNN cases check it against ONNX Runtime and time it beside the own kernel); the
# cuDNN product + erf GELU probe (CudnnMatmulEpilogueGpuTests). Writes the choice for the peer table
# (attention-choice.py: cudnn only where it wins at b=64 on all four and loses no more than 2% at b=1) to
# /tmp/bw-attention-choice, which call 2 (the peer table, on the same warm machine) reads.
source bench/device/call-lib.sh "${CALL_SECONDS:-280}"
unpack tests || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 120 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" \
  --models bert,distilbert,vit_small_patch16_224,vit-hf --jobs 4 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
shape_of() { case $1 in bert|distilbert) echo "--shape seq=128" ;; esac; }
for round in 1 2; do
  for m in bert distilbert vit_small_patch16_224 vit-hf; do
    for a in own cudnn; do
      q $m-$a-b64-$round 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" $(shape_of $m) --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b64-$round.json"
    done
  done
done
for m in bert vit_small_patch16_224; do
  for a in own cudnn; do
    q $m-$a-b1 25 env BATCHWISE_ATTENTION=$a "$CLI" bench "$WORK/exports/$m/model.onnx" $(shape_of $m) --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$a-b1.json"
  done
done
python3 bench/results/h200-session46/next/attention-choice.py "$R" > /tmp/bw-attention-choice 2> "$R/attention-choice.txt"
cat "$R/attention-choice.txt" >> "$R/log.txt"; t "attention choice: $(cat /tmp/bw-attention-choice)"
q gelu-probe 60 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CudnnMatmulEpilogueGpuTests
grep -E "Total:|\[FAIL\]" "$R/gelu-probe.txt" | head -8 >> "$R/log.txt"; cat "$R/cudnn-matmul-gelu-probe.md" >> "$R/log.txt" 2>/dev/null
q attention-tests $(( $(left) - 8 )) env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.AttentionGpuTests
grep -E "Total:|\[FAIL\]" "$R/attention-tests.txt" | head -8 >> "$R/log.txt"; grep -E "cudnn|cuDNN" "$R/attention.md" >> "$R/log.txt" 2>/dev/null
pack
