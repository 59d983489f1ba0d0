#!/usr/bin/env python3
"""PyTorch peer timings on one NVIDIA GPU: images/s per model, variant and batch size, as JSON lines.

Variants (random weights, inference mode):
  fp32        eager, float32, NCHW (TF32 off unless --tf32 on: Batchwise's fp32 means true fp32)
  fp16-cl     eager, float16, channels-last
  fp16-graph  float16, channels-last, captured once into a CUDA graph and replayed

Models: torchvision's resnet50 and mobilenet_v2, and yolov8n.py (Batchwise's zoo:yolov8n, layer for layer).
Input sizes: SIZE (square) or HEIGHTxWIDTH, as the zoo's size option (zoo:resnet50?size=1600x1008 is [b, 3, 1600, 1008]).

Timing: warm-up runs (not measured), then --windows windows of back-to-back runs, each timed with CUDA events
and long enough to last --window-seconds; one line per (model, input, variant, batch) with the median window's
images/s and every window's value. A point that fails (out of memory, a capture error) gives a line with "error".

    python3 torch_bench.py --models resnet50,mobilenet_v2 --batch-sizes 1,8,64,256 > torch.jsonl
    python3 torch_bench.py --case resnet50@224:1,8,64,256 --case resnet50@1600x1008:1,8 --case yolov8n@640:1,8,64
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys

try:  # importable without torch (parse_case, parse_size), so the driver's tests run on machines without it
    import torch
    import torchvision
except ImportError:  # pragma: no cover - main() says so
    torch = torchvision = None

MODEL_NAMES = ("resnet50", "mobilenet_v2", "yolov8n")
VARIANTS = ("fp32", "fp16-cl", "fp16-graph")


def parse_size(text):
    """'224' -> (224, 224); '1600x1008' -> (1600, 1008): height x width, as Batchwise's zoo size option."""
    parts = str(text).lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"input size '{text}' is neither SIZE nor HEIGHTxWIDTH")
    return int(parts[0]), int(parts[-1])


def parse_case(text):
    """'resnet50@1600x1008:1,8' -> ('resnet50', (1600, 1008), [1, 8]); size and batches optional (None)."""
    name, _, batches = text.partition(":")
    name, _, size = name.partition("@")
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model '{name}' in '{text}' (known: {', '.join(MODEL_NAMES)})")
    hw = parse_size(size) if size else None
    bs = [int(b) for b in batches.split(",") if b] if batches else None
    if bs is not None and (not bs or min(bs) < 1):
        raise ValueError(f"bad batch sizes in '{text}'")
    return name, hw, bs


def create_model(name, height, width):
    if name == "yolov8n":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import yolov8n  # bench/peers/yolov8n.py

        if height != width:
            raise ValueError("yolov8n (as the zoo builds it) takes square inputs")
        return yolov8n.YoloV8n(height)
    return getattr(torchvision.models, name)(weights=None)


def build_model(name, variant, height, width, device):
    """The model on the device, in the variant's precision and memory format, in inference mode."""
    model = create_model(name, height, width).eval().to(device)
    if variant != "fp32":
        model = model.half().to(memory_format=torch.channels_last)
    return model


def build(model, variant, batch, height, width, device):
    """Returns a zero-argument callable running one batch (asynchronously on the current stream)."""
    x = torch.randn(batch, 3, height, width, device=device)
    if variant != "fp32":
        x = x.half().contiguous(memory_format=torch.channels_last)
    if variant != "fp16-graph":
        return lambda: model(x)
    return capture(lambda: model(x))


def capture(run):
    """`run` (a zero-argument callable launching GPU work) captured once into a CUDA graph: returns the graph's replay.
    CUDA graphs need warm-up on a side stream before capture (cuDNN/cuBLAS pick algorithms and allocate there)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()  # the output lives in the graph's memory pool; we only time it
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
        # Warm-up: 3 first runs (cuDNN's algorithm search), then about warmup_seconds (at least 5 runs), whose mean
        # sizes the windows; few runs at least, so a 100 ms batch (1600x1008) does not take seconds to warm.
        time_runs(run, 3)
        per_run = max(time_runs(run, 5) / 5, 1e-6)
        warm = max(5, int(warmup_seconds / per_run))
        per_run = max(time_runs(run, warm) / warm, 1e-6)
        iters = max(3, int(window_seconds / per_run))
        rates = [batch * iters / time_runs(run, iters) for _ in range(windows)]
    return iters, rates


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,mobilenet_v2",
                   help=f"comma-separated NAME or NAME@SIZE, from {', '.join(MODEL_NAMES)}; run at --size and --batch-sizes")
    p.add_argument("--case", action="append", default=[], metavar="NAME@SIZE:B1,B2",
                   help="a model at its own input size and batch sizes (repeatable; replaces --models), e.g. resnet50@1600x1008:1,8")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--batch-sizes", default="1,8,64,256", help="comma-separated batch sizes")
    p.add_argument("--size", default="224", help="input size: SIZE or HEIGHTxWIDTH")
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--window-seconds", type=float, default=1.0)
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--tf32", choices=("off", "on"), default="off", help="TF32 for fp32 convolutions and matmuls")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="do not let cuDNN time its algorithms")
    p.add_argument("--device", type=int, default=0)
    args = p.parse_args()

    if torch is None:
        sys.exit("torch_bench.py: python3 has no torch/torchvision")
    if not torch.cuda.is_available():
        sys.exit("torch_bench.py: no CUDA device visible to PyTorch")
    variants = [v for v in args.variants.split(",") if v]
    try:
        default_size = parse_size(args.size)
        default_batches = [int(b) for b in args.batch_sizes.split(",") if b]
        if not default_batches or min(default_batches) < 1:
            raise ValueError(f"bad batch sizes {args.batch_sizes}")
        specs = args.case or [m for m in args.models.split(",") if m]
        cases = [(n, hw or default_size, bs or default_batches) for n, hw, bs in map(parse_case, specs)]
    except ValueError as e:
        p.error(str(e))
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variants {bad}")

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
    }

    for name, (height, width), batches in cases:
        for variant in variants:
            model = error = None
            try:
                torch.manual_seed(0)
                model = build_model(name, variant, height, width, device)
            except Exception as e:  # noqa: BLE001 - reported on every line of this model and variant
                error = f"{type(e).__name__}: {e}".splitlines()[0]
            for batch in batches:
                line = {"model": name, "input": f"{height}x{width}", "height": height, "width": width,
                        "variant": variant, "batch": batch}
                if height == width:
                    line["size"] = height
                run = None
                try:
                    if error:
                        raise RuntimeError(error)
                    torch.manual_seed(0)
                    with torch.inference_mode():
                        run = build(model, variant, batch, height, width, device)
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
                except Exception as e:  # noqa: BLE001 - one failed point must not lose the others
                    line["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                finally:
                    run = None
                    torch.cuda.synchronize(device)
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                line.update(context, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                print(json.dumps(line), flush=True)
            model = None
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
