#!/usr/bin/env bash
# Session 20, call 5 (main at .device/rev): outputs of the models whose Q/K/V projections now run as one product
# (Llama's grouped K/V are narrower than Q; DistilBERT, GPT-2 has one packed projection already), fp16 on cuda against
# ONNX Runtime fp32 on the same seeded inputs.
source bench/device/call-lib.sh 250
unpack || { pack; exit 1; }
timeout 150 python3 bench/peers/world.py --export --work "$WORK/exports" --out "$R" --models llama,distilbert,bert --jobs 3 > "$R/exports.log" 2>&1
t "exports: $(grep -c ': ok' "$R/exports.log") ok"
for m in llama distilbert bert; do
  shape=$(python3 -c "import json; print(' '.join(json.load(open('$R/export-$m.json')).get('shape_args', [])))" 2>/dev/null)
  timeout "$(lim 40)" "$CLI" compare "$WORK/exports/$m/model.onnx" --engines ort,cuda --precision fp16 -b 4 $shape > "$R/compare-$m.txt" 2>&1
  t "compare $m exit $? $(grep -iE 'cosine|verdict|pass|fail' "$R/compare-$m.txt" | head -4 | tr -s ' ' | tr '\n' ';' | cut -c1-300)"
done
pack
