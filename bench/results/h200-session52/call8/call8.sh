#!/usr/bin/env bash
# Session 52, call 8 (~120 s; carry .device after staging .device1..4; 40a98df): where DistilBERT b=64's time goes now
# (its per-step profile with the sequence-length attention of sessions 48-50; session 47's was before it), and two cheap
# switches against the default, in turn, twice, runs queued 20 at a time: programmatic dependent launch into generated
# kernels (BATCHWISE_PDL=on: the LayerNorms, the GELU pass, the flagged attention's check) and the padding mask as a bias
# (BATCHWISE_ATTENTION_MASK=bias, what sessions 46-47 ran).
source bench/device/call-lib.sh "${CALL_SECONDS:-200}"
unpack || { pack; exit 1; }
mkdir -p "$WORK/exports"
timeout 60 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models distilbert --jobs 1 > "$R/exports.log" 2>&1
M="$WORK/exports/distilbert/model.onnx"
q distilbert-prof 30 "$CLI" bench "$M" --shape seq=128 --engine cuda --precision fp16 -b 64 --duration 200ms --profile --json "$R/distilbert-prof.json"
bench() { # bench TAG ENV...
  local tag=$1; shift
  q $tag 25 env "$@" "$CLI" bench "$M" --shape seq=128 --queue 20 --engine cuda --precision fp16 -b 64 --duration 0.5s --warmup 0.3s --max-windows 3 --json "$R/$tag.json"
}
for round in 1 2; do
  bench distilbert-default-$round BATCHWISE_PDL=off
  bench distilbert-pdl-$round BATCHWISE_PDL=on
  bench distilbert-maskbias-$round BATCHWISE_ATTENTION_MASK=bias
done
pack
