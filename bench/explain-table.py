#!/usr/bin/env python3
"""The markdown table of an explain study: `explain-table.py OUT_DIR NAME...` reads OUT_DIR/NAME.json (explain --json)
and OUT_DIR/machine.txt, and prints the machine, the ceilings, the rate curve, one row per model (predicted against
measured at the smallest and largest batch, the knees) and every batch size's error."""
import json
import os
import sys

out, names = sys.argv[1], sys.argv[2:]


def pct(x):
    return "–" if x is None else f"{x:+.0%}"


def num(x):
    return "–" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def rate(flops):
    return f"{flops / 1e12:.1f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.1f} GFLOP/s"


def load(name):
    path = os.path.join(out, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None


machine = os.path.join(out, "machine.txt")
if os.path.exists(machine):
    print("```")
    print(open(machine).read().strip())
    print("```\n")
first = next((d for d in map(load, names) if d), None)
if first:
    c = first["ceilings"]
    peaks = [f"{rate(c['peak_flops'])} fp32 GEMM"]
    peaks += [f"{rate(c[k])} {n}" for k, n in (("peak_flops_tf32", "tf32"), ("peak_flops_fp16", "fp16"), ("peak_conv_flops", "fp32 conv")) if c.get(k)]
    print(f"Ceilings ({c['device']} via {c['engine']}): {', '.join(peaks)}; {c['bandwidth_bytes_per_s'] / 1e9:,.0f} GB/s; "
          f"{c['run_overhead_s'] * 1e6:.1f} µs per run + {c['op_overhead_s'] * 1e6:.2f} µs per op{' (' + c['launch'] + ')' if c.get('launch') else ''}; "
          f"predicting in {c.get('precision', 'fp32')}, saturation N ≈ {c['saturation_n']:,.0f} ({c['saturation_source']}).\n")
    if c.get("rate_curve"):
        print(f"{c.get('precision', 'fp32')} rate by N (the efficiency the prediction uses): "
              + ", ".join(f"N={p['n']:,.0f}: {rate(p['flops'])} ({p['efficiency']:.0%})" for p in c["rate_curve"]) + "\n")
print("| model | input | options | load | b first→last | predicted /s | measured /s (median) | fastest run /s | error first / last | vs fastest run | knee pred / meas |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name in names:
    d = load(name)
    if d is None:
        print(f"| {name} | (failed: see {name}.txt) ||||||||||")
        continue
    pred = {p["batch_size"]: p["throughput_samples_per_s"] for p in d["predicted"]}
    options = d["context"].get("ceilings used", "")
    m, e = d["measured"], d.get("error")
    if not m or not e:
        b = sorted(pred)
        print(f"| {d['context']['model']} | {d['input']} | {options} | – | {b[0]}→{b[-1]} | {num(pred[b[0]])} → {num(pred[b[-1]])} | (not measured) |||| {d['knee']['predicted_batch_size']} / – |")
        continue
    f, l = m[0], m[-1]
    best = lambda p: p["batch_size"] / p["latency_min_s"] if p.get("latency_min_s") else None
    print(f"| {d['context']['model']} | {d['input']} | {options} | {d.get('load_average', 0):.1f} | {f['batch_size']}→{l['batch_size']} "
          f"| {num(pred[f['batch_size']])} → {num(pred[l['batch_size']])} | {num(f['throughput_samples_per_s'])} → {num(l['throughput_samples_per_s'])} "
          f"| {num(best(f))} → {num(best(l))} | {pct(e['throughput_at_first'])} / {pct(e['throughput_at_last'])} "
          f"| {pct(e.get('best_run_at_first'))} / {pct(e.get('best_run_at_last'))} | {e['predicted_knee']} / {e['measured_knee']} |")
print("\nPer batch size (predicted / measured median /s, error):\n")
for name in names:
    d = load(name)
    if not d or not d["measured"]:
        continue
    pred = {p["batch_size"]: p["throughput_samples_per_s"] for p in d["predicted"]}
    print(f"- {name}: " + ", ".join(
        f"b={p['batch_size']} {num(pred[p['batch_size']])} / {num(p['throughput_samples_per_s'])} ({(pred[p['batch_size']] - p['throughput_samples_per_s']) / p['throughput_samples_per_s']:+.0%})"
        for p in d["measured"]))
