"""Which kernel cuBLASLt runs for the MLP's first product (names carry the tile, cluster and stage counts) and its
time: torch.profiler over F.linear at DistilBERT b=64's 8192 x 3072 x 768 and ViT-S b=64's 12608 x 1536 x 384 (fp16)."""
import torch
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity

for m, n, k in ((8192, 3072, 768), (12608, 1536, 384)):
    a = torch.randn(m, k, device="cuda", dtype=torch.half)
    w = torch.randn(n, k, device="cuda", dtype=torch.half)
    b = torch.randn(n, device="cuda", dtype=torch.half)
    for _ in range(20):
        F.linear(a, w, b)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(20):
            F.linear(a, w, b)
        torch.cuda.synchronize()
    for e in p.key_averages():
        if e.device_type.name == "CUDA":
            print(f"{m}x{n}x{k}: {e.key} x{e.count} avg {e.device_time_total / max(e.count, 1):.1f} us")
