#!/usr/bin/env python3
"""Where explain's per-layer prediction is off: `explain-layers.py EXPLAIN.json PROFILE.csv [BATCH]` sets explain's
layers_at_last (explain --json, predicted at its largest batch) beside `bench --profile`'s per-layer CSV (batch, order,
layer, ms, share; layer "Op 'node'", "input NAME", "output NAME") at that batch, and prints the predicted and measured
time per class (operator and rate-table kind), largest gap first.

The profile charges a fused chain (BatchNormalization, Relu, a residual Add, an activation) to the kernel that runs it,
named after the chain's first node; explain prices such nodes on their own rows (zero where fused). Predicted rows with
no profile row of their name are summed as "fused or not in the plan", so a class's gap may sit in that line instead."""
import csv
import json
import re
import sys
from collections import defaultdict

explain = json.load(open(sys.argv[1]))
layers = explain.get("layers_at_last")
if not layers:
    sys.exit(f"{sys.argv[1]} has no layers_at_last (explain --json of this Batchwise writes it)")
batch = int(sys.argv[3]) if len(sys.argv) > 3 else explain["predicted"][-1]["batch_size"]
if batch != explain["predicted"][-1]["batch_size"]:
    sys.exit(f"layers_at_last is at b={explain['predicted'][-1]['batch_size']}, not b={batch}: explain with --batch-sizes ending at {batch}")

measured = {}
for row in csv.DictReader(open(sys.argv[2])):
    if int(row["batch"]) != batch:
        continue
    m = re.match(r"^\S+ '([^']*)'", row["layer"])  # the name, without a suffix such as "(own grouped kernel, group width 24)"
    name = m.group(1) if m else row["layer"]
    measured[name] = measured.get(name, 0.0) + float(row["ms"]) / 1e3
if not measured:
    sys.exit(f"{sys.argv[2]} has no rows at b={batch}")


def key(layer):
    # explain names the fp16 conversions "input NAME to fp16" / "output NAME to fp32"; the profile "input NAME" / "output NAME".
    m = re.match(r"^(input|output) (.*) to fp(16|32)$", layer["name"])
    return f"{m.group(1)} {m.group(2)}" if m else layer["name"]


by_class = defaultdict(lambda: [0.0, 0.0, 0])
unmatched = 0.0
for layer in layers:
    k = key(layer)
    if k in measured:
        cls = f"{layer['op']} ({layer['kind']})"
        by_class[cls][0] += layer["seconds"]
        by_class[cls][1] += measured.pop(k)
        by_class[cls][2] += 1
    else:
        unmatched += layer["seconds"]
for name, t in measured.items():
    by_class["in the profile only"][1] += t
    by_class["in the profile only"][2] += 1

total_p = sum(v[0] for v in by_class.values()) + unmatched
total_m = sum(v[1] for v in by_class.values())
print(f"{explain['model']} at b={batch} ({explain['ceilings']['precision']}): predicted {total_p * 1e3:.3f} ms of layers, measured {total_m * 1e3:.3f} ms\n")
print("| class | layers | predicted ms | measured ms | measured / predicted |")
print("|---|---|---|---|---|")
for cls, (p, m, n) in sorted(by_class.items(), key=lambda kv: -abs(kv[1][1] - kv[1][0])):
    ratio = f"{m / p:.2f}" if p > 0 else "–"
    print(f"| {cls} | {n} | {p * 1e3:.3f} | {m * 1e3:.3f} | {ratio} |")
print(f"| fused or not in the plan (predicted only) | – | {unmatched * 1e3:.3f} | – | – |")
