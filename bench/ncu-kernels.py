#!/usr/bin/env python3
"""One steady-state run's kernels from an Nsight Compute CSV (`ncu --csv --page raw --graph-profiling node`).

    bench/ncu-kernels.py ncu.csv [RUN_US] [--label NAME]

Finds the run's period (the kernel that occurs least often, but more than once, and evenly: one run's first kernel),
prints the last whole run's kernels (duration, grid, block, registers) and their sum, and where RUN_US (bench's
microseconds a run, 1e6 / img/s at b=1) is given, what the kernels leave of it: the gaps between them (launch, the
graph's node boundaries, PDL's overlap).
"""
import csv
import io
import lzma
import sys


def rows_of(path):
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", errors="replace") as f:
        text = f.read()
    lines = [l for l in text.splitlines() if l.startswith('"')]
    if not lines:
        sys.exit(f"{path}: no CSV rows (ncu's log says why)")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    units = next((r for r in rows if not r.get("ID", "").strip().isdigit()), {})
    return [r for r in rows if r.get("ID", "").strip().isdigit()], units


def number(row, *keys):
    for k in keys:
        v = row.get(k, "").replace(",", "").strip()
        if v:
            try:
                return float(v)
            except ValueError:
                pass
    return float("nan")


def period(names):
    counts = {}
    for i, n in enumerate(names):
        counts.setdefault(n, []).append(i)
    best = None
    for n, at in counts.items():
        if len(at) < 2:
            continue
        gaps = {b - a for a, b in zip(at, at[1:])}
        if len(gaps) == 1:
            p = gaps.pop()
            if best is None or p > best[0]:
                best = (p, at[-1])
    if best is None:
        sys.exit("no kernel repeats evenly: profile more launches (--launch-count) so a whole run repeats")
    return best


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    rows, units = rows_of(args[0])
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(units.get("gpu__time_duration.sum", "nsecond").strip(), 1e-3)
    run_us = float(args[1]) if len(args) > 1 else None
    names = [r.get("Kernel Name", "?") for r in rows]
    p, last_start = period(names)
    start = last_start - p if last_start + p > len(rows) else last_start
    start = max(0, min(start, len(rows) - p))
    run = rows[start:start + p]
    total = 0.0
    print(f"{args[0]}: {len(rows)} kernels profiled, {p} a run; the run at rows {start}..{start + p - 1}")
    print(f"{'#':>3} {'µs':>7} {'grid':>7} {'block':>6} {'regs':>5}  kernel")
    for i, r in enumerate(run):
        us = number(r, "gpu__time_duration.sum") * scale  # the units row says ns, us or ms
        total += us
        name = r.get("Kernel Name", "?")
        print(f"{i:>3} {us:7.2f} {number(r, 'launch__grid_size'):7.0f} {number(r, 'launch__block_size'):6.0f} {number(r, 'launch__registers_per_thread'):5.0f}  {name[:100]}")
    print(f"sum of kernel durations: {total:.1f} µs over {p} kernels (mean {total / p:.2f} µs)")
    if run_us:
        print(f"a run: {run_us:.1f} µs; outside the kernels (launch gaps, node boundaries): {run_us - total:.1f} µs ({(run_us - total) / p:.2f} µs a kernel)")


if __name__ == "__main__":
    main()
