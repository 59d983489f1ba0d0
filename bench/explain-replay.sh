#!/usr/bin/env bash
# Replays an explain study (bench/explain-gpu.sh's OUT) off the device: every run's prediction made again by this
# checkout's explain from the study's recorded ceilings (OUT/ceilings-cache) against the points it measured (OUT/NAME.json),
# so a change to the cost model is judged on the GPU's numbers without a GPU. Peer runs need their models: MODELS holds
# NAME.onnx or NAME.onnx.xz (weights zeroed are enough: explain reads the graph; bench/results/h200-session38/call4/zeroed).
#   CLI=/path/to/Batchwise.Cli STUDY=bench/results/h200-session38/call2/explain OUT=/tmp/replay [MODELS=dir] [CEILINGS=file[.xz]] bench/explain-replay.sh
# Writes OUT/NAME.txt / NAME.json for each run and OUT/table.md (bench/explain-table.py), and prints the table's summary.
set -uo pipefail
cd "$(dirname "$0")/.."
CLI=${CLI:?the built Batchwise.Cli}
STUDY=${STUDY:?an explain-gpu.sh output folder}
OUT=${OUT:-/tmp/explain-replay}
MODELS=${MODELS:-bench/results/h200-session38/call4/zeroed}
mkdir -p "$OUT"
# CEILINGS: another study's cache file to predict with (a change to the probe judged on this study's points).
cache=${CEILINGS:-$(ls "$STUDY"/ceilings-cache/vm-cuda-*.json "$STUDY"/ceilings-cache/vm-cuda-*.json.xz 2>/dev/null | head -1)}
[[ -n $cache ]] || { echo "no $STUDY/ceilings-cache/vm-cuda-*.json: the study kept no ceilings to replay" >&2; exit 2; }
if [[ $cache == *.xz ]]; then xz -dc "$cache" > "$OUT/ceilings.json" && cache=$OUT/ceilings.json; fi
# Large reports were xz-compressed when the study was packed (call-lib.sh's pack): read them decompressed.
mkdir -p "$OUT/measured"
for f in "$STUDY"/*-fp16.json "$STUDY"/*-fp32.json "$STUDY"/*-fp16.json.xz "$STUDY"/*-fp32.json.xz; do
  [[ -f $f ]] || continue
  if [[ $f == *.xz ]]; then xz -dc "$f" > "$OUT/measured/$(basename "$f" .xz)"; else cp "$f" "$OUT/measured/"; fi
done
batches=$(python3 -c "import json,sys; print(','.join(str(p['batch_size']) for p in json.load(open(sys.argv[1]))['measured']))" "$(ls "$OUT"/measured/*-fp16.json | head -1)")
cp "$STUDY/machine.txt" "$OUT/machine.txt" 2>/dev/null
names=()
for measured in "$OUT"/measured/*-fp16.json "$OUT"/measured/*-fp32.json; do
  name=$(basename "$measured" .json)
  base=${name%-fp*} precision=${name##*-}
  case $base in
    resnet50|resnet18|mobilenetv2|bert|mlp) model=zoo:$base ;;
    yolov8n) model="zoo:yolov8n?size=640" ;;
    *) model=$OUT/models/$base.onnx; mkdir -p "$OUT/models"
       if [[ ! -f $model ]]; then
         if [[ -f $MODELS/$base.onnx.xz ]]; then xz -dc "$MODELS/$base.onnx.xz" > "$model"; elif [[ -f $MODELS/$base.onnx ]]; then cp "$MODELS/$base.onnx" "$model"; else echo "skipped: no $MODELS/$base.onnx[.xz]" > "$OUT/$name.txt"; names+=("$name"); continue; fi
       fi ;;
  esac
  names+=("$name")
  opts=(); [[ $precision == fp16 ]] && opts=(--precision fp16)
  "$CLI" explain "$model" --engine cuda "${opts[@]}" --ceilings-file "$cache" --bench "$measured" -b "$batches" --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1 || echo "$name: exit $?" >&2
done
python3 bench/explain-table.py "$OUT" "${names[@]}" > "$OUT/table.md"
grep -E "^[0-9]+ of [0-9]+ runs" "$OUT/table.md"
