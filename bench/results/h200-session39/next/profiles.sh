#!/usr/bin/env bash
# PREPARED, NOT RUN (session 39 had no device; publish of its final commit): the evidence for explain's two open rows.
# (1) BERT fp16's large batches (+8-10% over-predicted at b=128-256 in session 38, its knee 128 against 32): bench at
#     b=32..256 for 1 s a point, so the SM clock and the power cap (bench's new clock column, device_clocks) show whether a
#     sustained large batch runs below the clock the ceilings' short timings saw; then a per-layer profile at b=32 and 256.
# (2) RegNetX-016 fp32 (+37% at b=4: cuDNN's fp32 grouped kernels at 14x14): explain at b=2,4 on fresh ceilings (the
#     grouped tables at 14x14 and 7x7 now), beside a per-layer profile at b=2 and 4.
source bench/device/call-lib.sh 330
unpack || { pack; exit 1; }
q bert-long 90 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,64,128,256 --duration 1s --json "$R/bert-long.json"
q bert-prof 60 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 32,256 --duration 300ms --profile --json "$R/bert-prof.json"
timeout "$(lim 90)" python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models regnetx_016 --jobs 1 > "$R/exports.log" 2>&1
RX=$WORK/exports/regnetx_016/model.onnx
if [ -f "$RX" ]; then
  q rx-explain 120 "$CLI" explain "$RX" --engine cuda -b 1,2,4,8 --duration 300ms --json "$R/rx-explain.json"
  q rx-prof 40 "$CLI" bench "$RX" --engine cuda -b 2,4 --duration 300ms --profile --json "$R/rx-prof.json"
fi
pack
