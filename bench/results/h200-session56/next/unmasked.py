#!/usr/bin/env python3
"""Session 56: PyTorch's rates for the transformers of the peer table with world.py's variants, the new
"unmasked" graph among them (transformers' SDPA call given no mask, captured), one JSON line a point, on standard output.

    python3 bench/results/h200-session56/next/unmasked.py [bert,distilbert,...] > unmasked.jsonl   # GPU machine
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "peers"))
import world  # noqa: E402

names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(world.UNMASKED_SDPA)
for name in names:
    request = {"name": name, "batches": [1, 64], "windows": 5, "window_seconds": 0.3, "warmup_seconds": 0.5}
    for line in world.torch_measure(request):
        print(json.dumps({k: line.get(k) for k in ("model", "variant", "batch", "images_per_s", "windows", "error", "notes")}), flush=True)
