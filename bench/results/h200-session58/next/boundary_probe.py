"""Session 58's prepared probe (python only, no carry; ~30 s on the device): what one kernel boundary costs in a
replayed CUDA graph on this card, to price issue 16's ResNet-50 b=1 bar (55 kernels in ~301 us on an H100; 4,000 img/s
needs 250 us). Chains of N dependent launches are captured and replayed; the time a launch is the replay's time / N.

  - tiny: an elementwise add on 1 element (one block): the floor of a dependent launch in a graph;
  - wide: the same on 132 x 1024 elements (132+ blocks): the floor when the grid covers every SM;
  - gemm: a 64 x 512 x 512 fp16 product (cuBLASLt, a few blocks): a library kernel's floor at b=1-like sizes;
  - conv: a 1 x 512 x 7 x 7 fp16 3x3 convolution, channels-last (cuDNN): ResNet-50's stage-4 3x3 at b=1.

Run: python3 bench/results/h200-session58/next/boundary_probe.py > boundary.txt
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "peers"))
from torch_bench import capture  # noqa: E402  (warm-up on a side stream, then one CUDA graph)


def per_launch(step, n=200, reps=20):
    def chain():
        for _ in range(n):
            step()

    replay = capture(chain)
    for _ in range(3):
        replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        a.record()
        replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000 / n)
    times.sort()
    return times[len(times) // 2]


def main():
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}
    torch.backends.cudnn.benchmark = True
    x1 = torch.zeros(1, device=dev)
    out["tiny_us"] = per_launch(lambda: x1.add_(1.0))
    xw = torch.zeros(132 * 1024, device=dev)
    out["wide_us"] = per_launch(lambda: xw.add_(1.0))
    a = torch.randn(64, 512, device=dev, dtype=torch.half)
    w = torch.randn(512, 512, device=dev, dtype=torch.half)
    buf = [a]

    def gemm():
        buf[0] = torch.mm(buf[0], w).clamp_(-1, 1)  # two kernels a step: the product and the clamp

    out["gemm_plus_clamp_us"] = per_launch(gemm, n=100)
    cin = torch.randn(1, 512, 7, 7, device=dev, dtype=torch.half).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1, bias=False).to(dev).half().to(memory_format=torch.channels_last)
    with torch.no_grad():
        conv.weight.mul_(0.01)  # keeps 100 chained convolutions' values finite
    cbuf = [cin]

    def convstep():
        with torch.no_grad():
            cbuf[0] = conv(cbuf[0])

    out["conv3x3_stage4_b1_us"] = per_launch(convstep, n=100)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
