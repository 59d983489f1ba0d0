#!/usr/bin/env bash
# Call 3 (build da41825), as run (one line in the run tool): CeilingsGpuTests to an end (cut at 90 s in session 44), then
# graph_vs_eager for HF ViT b=64 with the time left.
source bench/device/call-lib.sh 440; unpack tests; q ceilings-tests 320 env BATCHWISE_REQUIRE_GPU=1 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.CeilingsGpuTests; tail -3 "$R/ceilings-tests.txt" >> "$R/log.txt"; timeout "$(lim $(( $(left) - 10 )))" python3 bench/peers/graph_vs_eager.py --model vit-hf --batch 64 --out "$R/graph-vit-hf.json" > "$R/graph-vit-hf.txt" 2>&1; t "graph_vs_eager vit-hf exit $? $(grep '^##' "$R/graph-vit-hf.txt" | tr '\n' ';')"; pack
