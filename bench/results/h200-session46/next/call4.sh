#!/usr/bin/env bash
# Call 4 (build with cuDNN attention by default for large blocks, masks per query as a bias): AttentionGpuTests (the
# cuDNN cases incl. a causal bias per query); the BERT export's mask subgraph (mask_graph.py: why call 1's BERT plans had
# no cuDNN step); the peer table with the defaults (bench/device/world-call.sh's steps); ModelGpuTests if time is left.
source bench/device/call-lib.sh "${CALL_SECONDS:-570}"
unpack tests || { pack; exit 1; }
q attention-tests 45 env BATCHWISE_REQUIRE_GPU=1 BATCHWISE_REPORT_DIR="$R" "$TESTS" -class Batchwise.Cuda.Tests.Gpu.AttentionGpuTests
grep -E "Total:|\[FAIL\]" "$R/attention-tests.txt" | head -8 >> "$R/log.txt"; grep -E "cudnn" "$R/attention.md" >> "$R/log.txt" 2>/dev/null
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --jobs 12 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
timeout 20 python3 bench/results/h200-session46/next/mask_graph.py "$WORK/exports/bert/model.onnx" > "$R/mask-bert.txt" 2>&1
head -c 3000 "$R/mask-bert.txt" >> "$R/log.txt"
timeout "$(lim 440)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --jobs 6 --budget $(( $(left) - 25 )) > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
grep -E "^\| (bert|distilbert|vit_small_patch16_224|vit-hf|gpt2|llama|deit_small_patch16_224|t5-encoder) " "$R/world/world.md" | cut -d'|' -f2,4,6,10,11 >> "$R/log.txt"
if [ "$(left)" -gt 40 ]; then
  q model-tests $(( $(left) - 8 )) env BATCHWISE_REQUIRE_GPU=1 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.ModelGpuTests
  grep -E "Total:|\[FAIL\]" "$R/model-tests.txt" | head -8 >> "$R/log.txt"
fi
pack
