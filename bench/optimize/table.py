"""Prints the markdown table of bench/results/optimize-cpu/*.json (written by run-cpu.sh)."""
import glob
import json
import os
import sys

folder = sys.argv[1] if len(sys.argv) > 1 else "bench/results/optimize-cpu"
print("| run | b=1 before | b=1 after | b=1 speed-up | b=16 before | b=16 after | b=16 speed-up | conv MACs | file size | cosine | top-1 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(folder, "*.json"))):
    r = json.load(open(f))
    name = os.path.basename(f)[:-5]
    sb = {p["batch_size"]: p for p in r["speed_before"]}
    sa = {p["batch_size"]: p for p in r["speed_after"]}
    ag = r["agreement"][0] if r["agreement"] else None
    b, a = r["before"], r["after"]
    cell = lambda p: "%.1f ms (%.1f/s)" % (p["median_ms"], p["throughput"])
    top1 = "-" if ag is None or ag["top1_agreement"] is None else "%.0f%%" % (ag["top1_agreement"] * 100)
    cos = "n/a (input shape changed)" if ag is None else "%.6f" % ag["cosine"]
    print("| %s | %s | %s | **%.2fx** | %s | %s | **%.2fx** | %+.1f%% | %+.1f%% | %s | %s |" % (
        name, cell(sb[1]), cell(sa[1]), sb[1]["median_ms"] / sa[1]["median_ms"],
        cell(sb[16]), cell(sa[16]), sb[16]["median_ms"] / sa[16]["median_ms"],
        (a["conv_macs"] - b["conv_macs"]) * 100 / b["conv_macs"], (a["size_bytes"] - b["size_bytes"]) * 100 / b["size_bytes"], cos, top1))
