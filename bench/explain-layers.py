#!/usr/bin/env python3
"""explain's per-layer prediction against a measured per-layer profile at one batch size.

  bench MODEL --engine cuda [--precision fp16] -b B --profile --json RUN.json      # on the GPU: RUN.layers.csv too
  batchwise explain MODEL --engine cuda [--precision fp16] --ceilings-file CACHE.json --no-measure -b B --json PRED.json
  bench/explain-layers.py RUN.json PRED.json [B]

The profile times each step between CUDA events, which costs each step a few microseconds the graph run does not pay;
that cost is taken out evenly: (sum of the steps - the run's median latency in the graph) / steps. Steps are matched to
explain's layers by the node name in quotes ("Conv 'conv_9' (own split-K kernel)" -> conv_9); a fused step carries the
name of its first node, and explain's layers that no step names (fused away, or views) are summed as "unmatched".
Prints a table by explain's layer kind and the layers furthest from their prediction.
"""
import csv
import json
import re
import sys
from collections import defaultdict

run_path, pred_path = sys.argv[1], sys.argv[2]
run = json.load(open(run_path))
pred = json.load(open(pred_path))
batch = int(sys.argv[3]) if len(sys.argv) > 3 else pred["predicted"][-1]["batch_size"]
layers_csv = re.sub(r"\.json$", "", run_path) + ".layers.csv"
steps = [r for r in csv.DictReader(open(layers_csv)) if int(r["batch"]) == batch]
if not steps:
    sys.exit(f"no profiled steps at b={batch} in {layers_csv}")
point = next((p for p in run["points"] if p["batch_size"] == batch), None)
total = sum(float(r["ms"]) for r in steps) * 1e3
graph = point["latency_ms"]["p50"] * 1e3 if point else total
event = max(0.0, (total - graph) / len(steps))
layers = {l["name"]: l for l in pred["layers_at_last"]}
if pred["predicted"][-1]["batch_size"] != batch:
    sys.exit(f"{pred_path} predicts up to b={pred['predicted'][-1]['batch_size']}, not b={batch}: run explain with -b {batch}")

by_kind = defaultdict(lambda: [0.0, 0.0, 0])
rows, seen = [], set()
for r in steps:
    m = re.search(r"'([^']+)'", r["layer"])
    name = m.group(1) if m else r["layer"]
    measured = float(r["ms"]) * 1e3 - event
    # A second step under a name already seen is a further pass of that layer's kernel chain (BERT's GELU in place after
    # its product, "MatMul 'matmul_22' + GELU (erf, in place)"): explain priced it among the layers no step names.
    layer = layers.get(name) if name not in seen else None
    kind = layer["kind"] if layer else "(a further pass of a step's layer)" if name in seen else "(no layer of that name)"
    predicted = layer["seconds"] * 1e6 if layer else 0.0
    seen.add(name)
    by_kind[kind][0] += predicted
    by_kind[kind][1] += measured
    by_kind[kind][2] += 1
    rows.append((name, kind, predicted, measured, r["layer"]))
unmatched = sum(l["seconds"] for n, l in layers.items() if n not in seen) * 1e6
print(f"b={batch}: {len(steps)} steps, {total:,.1f} µs profiled, {graph:,.1f} µs a run in the graph (median), "
      f"{event:.2f} µs a step of event cost taken out; explain predicts {pred['predicted'][-1]['latency_s'] * 1e6:,.1f} µs a run\n")
print("| kind | steps | predicted µs | measured µs | predicted / measured |")
print("|---|---:|---:|---:|---:|")
for kind, (p, m, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
    print(f"| {kind} | {n} | {p:,.1f} | {m:,.1f} | {p / m if m > 0 else float('nan'):.2f} |")
print(f"| explain's layers no step names (fused or views) | | {unmatched:,.1f} | | |")
print("\nFurthest from their prediction:\n")
print("| step | kind | predicted µs | measured µs |")
print("|---|---|---:|---:|")
for name, kind, p, m, label in sorted(rows, key=lambda r: -abs(r[2] - r[3]))[:15]:
    print(f"| {label} | {kind} | {p:,.1f} | {m:,.1f} |")
