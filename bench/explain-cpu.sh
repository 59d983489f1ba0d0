#!/usr/bin/env bash
# The explain model's honesty on ONNX Runtime (CPU): for every zoo model (small sizes, so a 2-core machine
# finishes in a few minutes), `batchwise explain` with a short measured sweep; then one markdown table of
# predicted against measured throughput at the smallest and largest batch and the knees.
#   bench/explain-cpu.sh [OUT_DIR]        (needs dotnet and python3; writes OUT_DIR/*.json and OUT_DIR/table.md)
# On a shared machine, run it as root under `nice -n -15` and read the load column: the verdicts say when the host was busy.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/batchwise-explain-cpu}
mkdir -p "$out"
dotnet build src/Batchwise.Cli -c Release -v q -nologo >/dev/null
cli=(dotnet src/Batchwise.Cli/bin/Release/net10.0/Batchwise.Cli.dll)
"${cli[@]}" explain zoo:mlp --no-measure --recalibrate -v >"$out/calibration.txt" 2>&1
run() {
  local name=$1; shift
  echo "$name: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "${cli[@]}" explain "$@" --duration 1.5 --json "$out/$name.json" >"$out/$name.txt" 2>&1
}
run mlp zoo:mlp --batch-sizes 1,2,4,8,16,32,64
run resnet18 "zoo:resnet18?size=112" --batch-sizes 1,2,4,8
run resnet50 "zoo:resnet50?size=112" --batch-sizes 1,2,4,8
run mobilenetv2 "zoo:mobilenetv2?size=112" --batch-sizes 1,2,4,8,16
run yolov8n "zoo:yolov8n?size=320" --batch-sizes 1,2,4
run bert "zoo:bert?seq=64&layers=2" --batch-sizes 1,2,4,8
python3 - "$out" <<'PY' >"$out/table.md"
import json, sys, os
out = sys.argv[1]
def pct(x): return "–" if x is None else f"{x:+.0%}"
print("| model | input | load | b first→last | predicted /s | measured /s (median) | fastest run /s | error first / last | vs fastest run | knee pred / meas |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in ["mlp", "resnet18", "resnet50", "mobilenetv2", "yolov8n", "bert"]:
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        print(f"| {name} | (failed: see {name}.txt) |"); continue
    d = json.load(open(path)); e = d["error"]; m = d["measured"]
    pred = {p["batch_size"]: p["throughput_samples_per_s"] for p in d["predicted"]}
    f, l = m[0], m[-1]
    best = lambda p: p["batch_size"] / p["latency_min_s"] if p.get("latency_min_s") else None
    num = lambda x: f"{x:,.0f}" if x >= 100 else f"{x:.1f}"
    print(f"| {d['context']['model']} | {d['input']} | {d.get('load_average', 0):.1f} | {f['batch_size']}→{l['batch_size']} "
          f"| {num(pred[f['batch_size']])} → {num(pred[l['batch_size']])} | {num(f['throughput_samples_per_s'])} → {num(l['throughput_samples_per_s'])} "
          f"| {num(best(f))} → {num(best(l))} | {pct(e['throughput_at_first'])} / {pct(e['throughput_at_last'])} "
          f"| {pct(e.get('best_run_at_first'))} / {pct(e.get('best_run_at_last'))} | {e['predicted_knee']} / {e['measured_knee']} |")
PY
cat "$out/table.md"
