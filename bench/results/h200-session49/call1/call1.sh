#!/usr/bin/env bash
# Session 49, call 1 (~560 s; carry .device with node.tar.xz): cuDNN's attention given a padding mask as sequence lengths.
# 1. The probe (CudnnAttentionGpuTests): the lengths graph (cudnn-frontend's padding_mask) against the bias and no-bias
#    graphs at BERT's shape, each configuration timed; its output against a CPU reference, and what it writes past the
#    lengths. 2. DistilBERT and BERT exported here: `compare` against ONNX Runtime at b=64 with masks of ones, and with
#    right-padded, left-padded and empty sequences, BATCHWISE_ATTENTION_MASK=lengths (the new default) and =bias.
# 3. bench b=64 lengths against bias, alternating, two rounds; DistilBERT's per-step profile. 4. The peer table's rows
# of DistilBERT and BERT (world.py, judged against session 47's peer). 5. GPU classes to the end (attention, model first).
source bench/device/call-lib.sh "${CALL_SECONDS:-560}"
unpack tests node || { pack; exit 1; }
q cudnn-probe 60 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CudnnAttentionGpuTests
grep -E "^\| cudnn" "$R"/cudnn-sdpa-probe.md | cut -c1-420 >> "$R/log.txt"
grep -E "Total:|\[FAIL\]" "$R"/cudnn-probe.txt >> "$R/log.txt"
mkdir -p "$WORK/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models bert,distilbert --jobs 2 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx | wc -l)"
# Masks: all ones; and 64 sequences of which the first 40 right-padded to lengths 1..128, 16 left-padded, 7 full, 1 empty.
timeout 30 python3 - "$WORK/masks" <<'PY'
import sys, os, numpy as np
root = sys.argv[1]
rng = np.random.default_rng(49)
for name in ("ones", "padded"):
    os.makedirs(f"{root}/{name}", exist_ok=True)
    ids = rng.integers(1000, 20000, size=(64, 128), dtype=np.int64)
    mask = np.ones((64, 128), dtype=np.int64)
    if name == "padded":
        for i in range(40):
            mask[i, rng.integers(1, 129):] = 0
        for i in range(40, 56):
            mask[i, :rng.integers(1, 100)] = 0
        mask[63, :] = 0
    np.save(f"{root}/{name}/input_ids.npy", ids)
    np.save(f"{root}/{name}/attention_mask.npy", mask)
    print(name, "kept keys per sequence:", mask.sum(1).tolist())
PY
for m in distilbert bert; do
  for masks in padded ones; do
    for mode in lengths bias; do
      [ $masks = ones ] && [ $mode = bias ] && continue
      q cmp-$m-$masks-$mode 45 env BATCHWISE_ATTENTION_MASK=$mode "$CLI" compare "$WORK/exports/$m/model.onnx" -e ort,cuda --precision fp16 -b 64 --shape seq=128 --inputs "$WORK/masks/$masks" --rtol 0.05 --atol 0.05 --json "$R/cmp-$m-$masks-$mode.json"
      t "  $(grep -iE 'cosine|max abs|pass|fail|error' "$R/cmp-$m-$masks-$mode.txt" | head -4 | tr -s ' ' | tr '\n' ' ' | cut -c1-300)"
    done
  done
done
for round in 1 2; do
  for m in distilbert bert; do
    for mode in lengths bias; do
      q $m-$mode-$round 30 env BATCHWISE_ATTENTION_MASK=$mode "$CLI" bench "$WORK/exports/$m/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$m-$mode-$round.json"
    done
  done
done
q distilbert-prof 30 "$CLI" bench "$WORK/exports/distilbert/model.onnx" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distilbert-prof.json"
timeout "$(lim 170)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --models distilbert,bert --jobs 2 --budget 150 --reference bench/results/h200-session47/call1/world.json.xz > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below|distilbert|bert" "$R/world/world.md" | cut -c1-300 >> "$R/log.txt"
FIRST="AttentionGpuTests ModelGpuTests CudnnMatmulEpilogueGpuTests NodeGpuTests"
BATCHWISE_ONNX_NODE_TESTS=$NODE FIRST="$FIRST" LIMITS="Int8PointwiseGpuTests=200 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
