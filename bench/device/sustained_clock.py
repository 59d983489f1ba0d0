"""The GPU's clock under sustained GEMM loads of several sizes (issue 16: explain's power-cap study).

Each size runs back-to-back fp16 (and one fp32) matmuls for SECONDS; NVML's SM clock, power and throttle reasons are
sampled every 20 ms. Printed per size: the burst rate (first 100 ms), the sustained rate (last half), both as TFLOP/s,
and the mean clock and power over the last half. Needs torch and pynvml (or nvidia-smi). Run: python3 sustained_clock.py [SECONDS]
"""
import json
import subprocess
import sys
import threading
import time

import torch

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5


def sampler(stop, samples):
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not stop.is_set():
            samples.append((time.perf_counter(), pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                            pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
                            pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)))
            time.sleep(0.02)
    except Exception as e:  # no pynvml: nvidia-smi once per 100 ms
        while not stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split(",")
            samples.append((time.perf_counter(), float(out[0]), float(out[1]), 0))
            time.sleep(0.1)


def run(dtype, m, n, k):
    a = torch.randn(m, k, device="cuda", dtype=dtype)
    b = torch.randn(k, n, device="cuda", dtype=dtype)
    flops = 2.0 * m * n * k
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    time.sleep(1.0)  # let the clock recover between sizes
    stop, samples = threading.Event(), []
    th = threading.Thread(target=sampler, args=(stop, samples))
    th.start()
    marks = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        ev = torch.cuda.Event(enable_timing=True)
        for _ in range(4):
            a @ b
        ev.record()
        ev.synchronize()
        marks.append((time.perf_counter(), 4))
    stop.set()
    th.join()

    def rate(lo, hi):
        sel = [(t, c) for t, c in marks if lo <= t - t0 < hi]
        if len(sel) < 2:
            return float("nan")
        return sum(c for _, c in sel[1:]) * flops / (sel[-1][0] - sel[0][0]) / 1e12

    late = [s for s in samples if s[0] - t0 >= SECONDS / 2]
    return {"dtype": str(dtype), "m": m, "n": n, "k": k, "burst_tflops": rate(0, 0.1), "sustained_tflops": rate(SECONDS / 2, SECONDS),
            "sm_mhz": sum(s[1] for s in late) / max(1, len(late)), "power_w": sum(s[2] for s in late) / max(1, len(late)),
            "throttle_reasons": sorted({s[3] for s in late}),
            "series": [(round(s[0] - t0, 2), s[1], round(s[2])) for s in samples[::5]]}


torch.backends.cuda.matmul.allow_tf32 = False
rows = []
for n in (256, 1024, 4096, 16384, 65536):
    rows.append(run(torch.float16, 4096, n, 4096))
rows.append(run(torch.float16, 8192, 8192, 8192))
rows.append(run(torch.float32, 8192, 8192, 8192))
for r in rows:
    print(json.dumps(r))
