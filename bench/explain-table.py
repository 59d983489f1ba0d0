#!/usr/bin/env python3
"""The markdown table of an explain study: `explain-table.py OUT_DIR NAME...` reads OUT_DIR/NAME.json (explain --json)
and OUT_DIR/machine.txt, and prints the machine, the ceilings, the rate curve, one row per run (predicted against measured,
the error at every batch size, the knees, pass/fail against ±30% at every batch and the knee within one batch-size step;
a run without OUT_DIR/NAME.json is a row with the last line of OUT_DIR/NAME.txt) and every batch size's numbers."""
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
TOLERANCE = 0.30  # issue 16: throughput within ±30% at every batch, the knee within one batch-size step


def knee_steps(predicted, measured, sizes):
    """Batch-size steps between the knees: doublings where both are powers of two (so a study over thin batches, 1, 4, 16,
    64, 256, is judged as one over 1, 2, 4, ..., 256 would be: 64 against 256 is two steps, not one), else positions in
    the measured sizes; None where a knee is not among them."""
    if predicted not in sizes or measured not in sizes:
        return None
    if all(k > 0 and k & (k - 1) == 0 for k in (predicted, measured)):
        return abs(predicted.bit_length() - measured.bit_length())
    return abs(sizes.index(predicted) - sizes.index(measured))


def verdict(d):
    """(worst error, its batch, knee steps apart, pass) over every measured batch size, or None where not measured."""
    pred = {p["batch_size"]: p["throughput_samples_per_s"] for p in d["predicted"]}
    m = [p for p in d["measured"] if p["batch_size"] in pred and p["throughput_samples_per_s"] > 0]
    if not m or not d.get("error"):
        return None
    errors = [((pred[p["batch_size"]] - p["throughput_samples_per_s"]) / p["throughput_samples_per_s"], p["batch_size"]) for p in m]
    worst = max(errors, key=lambda e: abs(e[0]))
    sizes = [p["batch_size"] for p in m]
    e = d["error"]
    steps = knee_steps(e["predicted_knee"], e["measured_knee"], sizes)
    ok = abs(worst[0]) <= TOLERANCE and steps is not None and steps <= 1
    return worst, steps, ok, errors


def why_not(name):
    """The last informative line of NAME.txt (a failure, a timeout or a skip)."""
    path = os.path.join(out, name + ".txt")
    if not os.path.exists(path):
        return "not run"
    lines = [l.strip() for l in open(path, errors="replace") if l.strip() and not l.startswith("exit ")]
    text = next((l for l in reversed(lines) if l.startswith(("skipped", "timed out"))), lines[-1] if lines else "no output")
    return text.replace("|", "/")[:160]


print("| run | model | input | options | b | predicted /s first→last | measured /s first→last | error at each batch | worst | knee pred / meas | result |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
passed = total = 0
for name in names:
    d = load(name)
    total += 1
    if d is None:
        print(f"| {name} | | | | | | | | | | **not measured**: {why_not(name)} |")
        continue
    pred = {p["batch_size"]: p["throughput_samples_per_s"] for p in d["predicted"]}
    options = d["context"].get("ceilings used", "")
    v = verdict(d)
    if v is None:
        b = sorted(pred)
        print(f"| {name} | {d['context']['model']} | {d['input']} | {options} | {b[0]}–{b[-1]} | {num(pred[b[0]])} → {num(pred[b[-1]])} | (not measured) | | | {d['knee']['predicted_batch_size']} / – | **not measured** |")
        continue
    (worst, at), steps, ok, errors = v
    passed += ok
    m = d["measured"]
    f, l = m[0], m[-1]
    reasons = [] if ok else ([f"{abs(worst):.0%} at b={at}"] if abs(worst) > TOLERANCE else []) + ([f"knee {steps} steps off"] if steps is None or steps > 1 else [])
    print(f"| {name} | {d['context']['model']} | {d['input']} | {options} | {f['batch_size']}–{l['batch_size']} "
          f"| {num(pred[f['batch_size']])} → {num(pred[l['batch_size']])} | {num(f['throughput_samples_per_s'])} → {num(l['throughput_samples_per_s'])} "
          f"| {' '.join(pct(x) for x, _ in errors)} | {pct(worst)} at b={at} | {d['error']['predicted_knee']} / {d['error']['measured_knee']} "
          f"| {'pass' if ok else 'FAIL (' + ', '.join(reasons) + ')'} |")
print(f"\n{passed} of {total} runs within ±{TOLERANCE:.0%} at every batch with the knee within one batch-size step (a doubling).")
print("\nPer batch size (predicted / measured median /s, error; fastest run /s; the GPU's mean SM clock and what held it, where bench reported them):\n")
for name in names:
    d = load(name)
    if not d or not d["measured"]:
        continue
    pred = {p["batch_size"]: p["throughput_samples_per_s"] for p in d["predicted"]}
    best = lambda p: f"; {num(p['batch_size'] / p['latency_min_s'])}" if p.get("latency_min_s") else ""

    def clock(p):
        c = p.get("device_clocks")
        if not c:
            return ""
        held = [f"{k} {v:.0%}" for k, v in sorted(c.get("limits", {}).items(), key=lambda kv: -kv[1]) if v >= 0.1]
        return f"; {c['sm_clock_mhz']:,.0f} MHz" + (f" {', '.join(held)}" if held else "")
    print(f"- {name}: " + ", ".join(
        f"b={p['batch_size']} {num(pred[p['batch_size']])} / {num(p['throughput_samples_per_s'])} ({(pred[p['batch_size']] - p['throughput_samples_per_s']) / p['throughput_samples_per_s']:+.0%}{best(p)}{clock(p)})"
        for p in d["measured"] if p["batch_size"] in pred))
