#!/usr/bin/env python3
"""Are explain's GEMM rate tables optimistic for small batches because they replay one call on the same weights?

explain's probe (GpuCeilingsProbe.PerCallInGraph) times a cuBLASLt call as the mean of 20 identical calls replayed from
a CUDA graph, on the same buffers: the weights stay in L2 between calls. In a model whose weights exceed L2 (BERT-base
fp16 170 MB, ViT-S fp32 88 MB, ConvNeXt-T fp32 114 MB against the H200's 50 MB), each layer reads its weights from
DRAM, and at batch 1-4 the weights are most of a product's bytes. This times the same products three ways in CUDA
graphs of 24 calls, as PyTorch runs them (cuBLAS): "hot" (one weight tensor, as the probe), "cold" (24 weight tensors,
> 100 MB in all, one a call), "ln" (the LayerNorm alone) and "cold+ln" (cold, each product followed by the LayerNorm, as a
transformer alternates kernels: more than cold + ln is a cost of alternating), and prints the times and the ratios. Needs PyTorch with CUDA (the device machine has it).
  python3 bench/explain-cold-weights.py [--out FILE.md]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from torch_bench import capture  # noqa: E402  (warm-up on a side stream, then one CUDA graph)

SHAPES = [  # (name, rows M at batch 1, K, N) as the models run them: activations [M, K] x weights [K, N]
    ("bert fc1 b=1", 128, 768, 3072),
    ("bert fc2 b=1", 128, 3072, 768),
    ("bert qkv b=1", 128, 768, 2304),
    ("bert fc1 b=4", 512, 768, 3072),
    ("vit-s fc1 b=1", 197, 384, 1536),
    ("vit-s qkv b=1", 197, 384, 1152),
    ("convnext-t s3 pw b=1", 196, 384, 1536),
]
CALLS = 24


def per_call(fn, calls=CALLS, repeats=20):
    """Microseconds a call: the best of `repeats` replays of `fn` (`calls` calls) captured into a CUDA graph."""
    replay = capture(fn)
    for _ in range(3):
        replay()
    torch.cuda.synchronize()
    best = float("inf")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(repeats):
        start.record()
        replay()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / calls)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    lines = [f"# GEMM per call, CUDA graph of {CALLS} calls, {torch.cuda.get_device_name()} (L2 {torch.cuda.get_device_properties(0).L2_cache_size >> 20} MB)", "",
             "| product | dtype | hot us | cold us | ln us | cold+ln us | cold/hot | (cold+ln)/(cold + ln) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for dtype in (torch.float16, torch.float32):
        torch.backends.cuda.matmul.allow_tf32 = False
        for name, m, k, n in SHAPES:
            x = torch.randn(m, k, device="cuda", dtype=dtype)
            ws = [torch.randn(k, n, device="cuda", dtype=dtype) for _ in range(CALLS)]
            y = torch.empty(m, n, device="cuda", dtype=dtype)
            ln = torch.nn.LayerNorm(n, device="cuda", dtype=dtype)
            hot = per_call(lambda: [torch.matmul(x, ws[0], out=y) for _ in range(CALLS)])
            cold = per_call(lambda: [torch.matmul(x, w, out=y) for w in ws])
            lnonly = per_call(lambda: [ln(y) for _ in range(CALLS)])
            coldln = per_call(lambda: [ln(torch.matmul(x, w, out=y)) for w in ws])
            lines.append(f"| {name} ({m}x{k} @ {k}x{n}, weights {k * n * ws[0].element_size() / 1e6:.1f} MB) | {str(dtype).split('.')[-1]} | {hot:.2f} | {cold:.2f} | {lnonly:.2f} | {coldln:.2f} | {cold / hot:.2f} | {coldln / (cold + lnonly):.2f} |")
            print(lines[-1], flush=True)
            del ws
    text = "\n".join(lines) + "\n"
    if a.out:
        open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
