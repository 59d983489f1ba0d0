#!/usr/bin/env python3
"""Why a PyTorch peer's CUDA-graph variant is slower than its eager one (session 44's table, H100: Hugging Face BERT b=64
eager SDPA 42,841 seq/s against 18,363 replayed from a CUDA graph; DistilBERT 23,919 / 18,508; HF ViT 23,752 / 9,112;
timm's models the other way round). For each variant world.py times (the same builders, `world.torch_variants`), the
kernels of N runs under torch.profiler: name, calls a run, microseconds a run, ranked, and the run's total — so the two
lists show which kernels the capture changed (another attention backend, another GEMM, a copy).

    python3 bench/peers/graph_vs_eager.py --model bert --batch 64 [--runs 20] [--top 15] [--out FILE.json]   # GPU machine
"""
import argparse
import collections
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import world  # noqa: E402  (BY_NAME, torch_variants: the peer table's own model builders)


def kernels(run, runs):
    """{kernel name: (calls, total device microseconds)} over `runs` runs of `run`, from torch.profiler's CUDA events."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            run()
        torch.cuda.synchronize()
    by_name = collections.defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = by_name[event.name]
            entry[0] += 1
            entry[1] += event.time_range.elapsed_us()
    return {name: (calls, micros) for name, (calls, micros) in by_name.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bert", help=f"one of {', '.join(world.BY_NAME)}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", help="the lists as JSON too")
    args = p.parse_args(argv)
    if args.model not in world.BY_NAME:
        p.error(f"--model {args.model!r} is not one of {', '.join(world.BY_NAME)}")

    import torch

    device = torch.device("cuda", 0)
    torch.manual_seed(0)
    variants, notes = world.torch_variants(world.BY_NAME[args.model], device)
    report = {"model": args.model, "batch": args.batch, "runs": args.runs, "notes": notes, "variants": {}}
    for variant, make in variants:
        try:
            with torch.inference_mode():
                run = make(args.batch)
                found = kernels(run, args.runs)
        except Exception as e:  # noqa: BLE001 - a variant that cannot be built (world.py's error cell) must not lose the others
            print(f"## {args.model} b={args.batch} {variant}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            report["variants"][variant] = {"error": f"{type(e).__name__}: {e}"[:300]}
            torch.cuda.synchronize()
            continue
        total = sum(micros for _, micros in found.values()) / args.runs
        ranked = sorted(found.items(), key=lambda kv: -kv[1][1])
        print(f"## {args.model} b={args.batch} {variant}: {total:,.1f} us of kernels a run, {len(found)} kernel names")
        for name, (calls, micros) in ranked[:args.top]:
            print(f"{micros / args.runs:10.1f} us  {calls / args.runs:5.1f}x  {name[:140]}")
        report["variants"][variant] = {"kernel_us_per_run": round(total, 1),
                                       "kernels": [{"name": n, "calls_per_run": c / args.runs, "us_per_run": round(m / args.runs, 2)}
                                                   for n, (c, m) in ranked]}
        run = None
        torch.cuda.synchronize()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
