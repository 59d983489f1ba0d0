#!/usr/bin/env bash
# A device call (`run` with carry [".device"], after publish.sh and stage.sh): issue 16's peer table, every model of
# bench/peers/world.py exported on the machine, then each against PyTorch's best (fp16, channels-last, CUDA graph; SDPA
# for the transformers) in one run. About 540 s (session 31: exports ~200 s at 12 jobs, the table 334 s; session 44: exports
# cached on the warm machine 19 s, the table 323 s with PyTorch's 3 windows, ~60 s more with its 5 now).
source bench/device/call-lib.sh "${CALL_SECONDS:-560}"
unpack || { pack; exit 1; }
mkdir -p "$R/exports"
timeout 200 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --jobs 12 > "$R/exports.log" 2>&1
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
# REFERENCE (a world.json or .json.xz of an earlier run on the same card; session 48: bench/results/h200-session47/call1/
# world.json.xz) leaves unjudged the rows whose PyTorch ran below 80% of its rate there.
timeout "$(lim 480)" python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" \
  --jobs 6 --budget $(( $(left) - 25 )) ${REFERENCE:+--reference "$REFERENCE"} > "$R/world.log" 2>&1
t "world exit $?"
grep -E "^\*\*At|^Below" "$R/world/world.md" >> "$R/log.txt"
pack
