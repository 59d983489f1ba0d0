#!/usr/bin/env python3
"""PyTorch peer timings on one NVIDIA GPU: images/s per model, variant and batch size, as JSON lines.

Variants (random weights, inference mode):
  fp32        eager, float32, NCHW (TF32 off unless --tf32 on: Batchwise's fp32 means true fp32)
  fp16-cl     eager, float16, channels-last
  fp16-graph  float16, channels-last, captured once into a CUDA graph and replayed

Timing: warm-up runs (not measured), then --windows windows of back-to-back runs, each timed with CUDA events
and long enough to last --window-seconds; one line per (model, variant, batch) with the median window's
images/s and every window's value.

    python3 torch_bench.py --models resnet50,mobilenet_v2 --batch-sizes 1,8,64,256 > torch.jsonl
"""
import argparse
import datetime
import json
import platform
import statistics
import sys

import torch
import torchvision

MODELS = {
    "resnet50": torchvision.models.resnet50,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
}
VARIANTS = ("fp32", "fp16-cl", "fp16-graph")


def build(name, variant, batch, size, device):
    """Returns a zero-argument callable running one batch (asynchronously on the current stream)."""
    model = MODELS[name](weights=None).eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    if variant != "fp32":
        model = model.half().to(memory_format=torch.channels_last)
        x = x.half().contiguous(memory_format=torch.channels_last)
    if variant != "fp16-graph":
        return lambda: model(x)

    # CUDA graphs need warm-up on a side stream before capture (cuDNN/cuBLAS pick algorithms and allocate there).
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)  # the output lives in the graph's memory pool; we only time it
    return graph.replay


def time_runs(run, iters):
    """Seconds for `iters` back-to-back runs, measured with CUDA events on the current stream."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def measure(run, batch, warmup_seconds, window_seconds, windows):
    with torch.inference_mode():  # eager variants run here; a replayed graph ignores it
        # Warm-up: at least 10 runs and about warmup_seconds.
        time_runs(run, 10)
        per_run = max(time_runs(run, 10) / 10, 1e-6)
        time_runs(run, max(1, int(warmup_seconds / per_run)))
        per_run = max(time_runs(run, 20) / 20, 1e-6)
        iters = max(10, int(window_seconds / per_run))
        rates = [batch * iters / time_runs(run, iters) for _ in range(windows)]
    return iters, rates


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,mobilenet_v2", help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--batch-sizes", default="1,8,64,256", help="comma-separated batch sizes")
    p.add_argument("--size", type=int, default=224, help="image height and width")
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--window-seconds", type=float, default=1.0)
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--tf32", choices=("off", "on"), default="off", help="TF32 for fp32 convolutions and matmuls")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="do not let cuDNN time its algorithms")
    p.add_argument("--device", type=int, default=0)
    args = p.parse_args()

    if not torch.cuda.is_available():
        sys.exit("torch_bench.py: no CUDA device visible to PyTorch")
    models = [m for m in args.models.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    batches = [int(b) for b in args.batch_sizes.split(",") if b]
    bad = [m for m in models if m not in MODELS] + [v for v in variants if v not in VARIANTS]
    if bad or not batches or min(batches) < 1:
        p.error(f"unknown models/variants {bad} or bad batch sizes {args.batch_sizes}")

    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    device = torch.device("cuda", args.device)
    torch.cuda.set_device(device)
    context = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "host": platform.node(),
        "tf32": args.tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "size": args.size,
    }

    for name in models:
        for variant in variants:
            for batch in batches:
                torch.manual_seed(0)
                line = {"model": name, "variant": variant, "batch": batch}
                try:
                    with torch.inference_mode():
                        run = build(name, variant, batch, args.size, device)
                    iters, rates = measure(run, batch, args.warmup_seconds, args.window_seconds, args.windows)
                    median = statistics.median(rates)
                    line.update(
                        images_per_s=round(median, 1),
                        latency_ms=round(1000.0 * batch / median, 4),
                        windows=[round(r, 1) for r in rates],
                        iters_per_window=iters,
                        peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                    )
                except torch.cuda.OutOfMemoryError:
                    line["error"] = "out of memory"
                finally:
                    run = None
                    torch.cuda.synchronize(device)
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                line.update(context, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
