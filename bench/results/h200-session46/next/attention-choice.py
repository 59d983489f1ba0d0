#!/usr/bin/env python3
"""Reads call1's bench JSONs (MODEL-ATTN-b64-ROUND.json, MODEL-ATTN-b1.json) and prints the attention choice for the
peer table: cudnn only where it is faster at b=64 on every model (mean of the rounds) and no more than 2% slower at b=1
on any; a table of the rates to stderr."""
import glob, json, os, sys
from collections import defaultdict

r = sys.argv[1]
rates = defaultdict(list)
for path in glob.glob(os.path.join(r, "*-b*.json")):
    name = os.path.basename(path)[:-5]
    parts = name.split("-")
    if len(parts) < 3:
        continue
    batch_part = next((p for p in parts if p in ("b64", "b1")), None)
    if batch_part is None:
        continue
    i = parts.index(batch_part)
    model, attn = "-".join(parts[:i - 1]), parts[i - 1]
    try:
        doc = json.load(open(path))
        rate = [p["throughput_samples_per_s"] for p in doc["points"] if p.get("concurrency", 1) == 1][0]
        engine_attention = doc.get("engine", {}).get("attention")
    except Exception as e:  # a failed run: no rate, no choice from it
        print(f"{name}: unreadable ({e})", file=sys.stderr)
        continue
    rates[(model, batch_part, attn)].append(rate)
    print(f"{name}: {rate:,.0f}/s (engine attention: {engine_attention})", file=sys.stderr)

choice, why = "cudnn", []
models = sorted({m for (m, b, a) in rates if b == "b64"})
for m in models:
    own, cud = rates.get((m, "b64", "own")), rates.get((m, "b64", "cudnn"))
    if not own or not cud:
        choice = "own"; why.append(f"{m} b=64 not measured both ways"); continue
    ratio = (sum(cud) / len(cud)) / (sum(own) / len(own))
    why.append(f"{m} b=64 cudnn/own {ratio:.3f}")
    if ratio <= 1.0:
        choice = "own"
for m in sorted({m for (m, b, a) in rates if b == "b1"}):
    own, cud = rates.get((m, "b1", "own")), rates.get((m, "b1", "cudnn"))
    if own and cud:
        ratio = (sum(cud) / len(cud)) / (sum(own) / len(own))
        why.append(f"{m} b=1 cudnn/own {ratio:.3f}")
        if ratio < 0.98:
            choice = "own"
if not models:
    choice = "own"; why.append("nothing measured")
print("; ".join(why), file=sys.stderr)
print(choice)
