#!/usr/bin/env python3
"""cuBLASLt's int8 GEMM as a ResNet block end would use it, timed on the device (python3 + PyTorch there, no dotnet).

A 1x1 int8 convolution over NHWC pixels is D[pixels, k] = requantize(X[pixels, c] . W[k, c]^T). The engine's own
block-end kernel does it with the residual Add and ReLU in its epilogue; this asks whether cuBLASLt's int8 kernels
(warpgroup MMA on Hopper) can do the same in one call, and how fast:

  D = saturate(round(ReLU(alpha[k] * (X . W^T) + beta * C + bias[k])))   C: the residual, int8, D's layout

with alpha a device vector (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST), beta a host scalar, the RELU_BIAS
epilogue. Per shape it prints every algorithm the heuristics offer, timed (CUDA events over a captured-free loop), for
beta = 0 with no C (the engine's current cuBLASLt route) and with the residual; torch's fp16 matmul of the same shape
and torch._int_mm (int32 out) as references; and a check of the result against the formula computed in float64 on the
GPU, counting values off by more than one step (the rounding mode shows as off-by-one counts).

Usage: python3 bench/int8-gemm-probe.py [--iters 50]
"""
import argparse
import ctypes
import glob
import os
import sys

import torch

CUDA_R_32F, CUDA_R_8I, CUDA_R_32I = 0, 3, 10
COMPUTE_32I = 72
DESC_POINTER_MODE, DESC_TRANSA, DESC_TRANSB, DESC_EPILOGUE, DESC_BIAS_POINTER, DESC_BIAS_TYPE = 2, 3, 4, 7, 8, 26
MODE_ALPHA_VECTOR_BETA_ZERO, MODE_ALPHA_VECTOR_BETA_HOST = 3, 4
EPILOGUE_RELU_BIAS = 6
PREF_MAX_WORKSPACE = 1

# ResNet-50's int8 block ends at b=256: (name, pixels, c, k); the engine's own kernel / cuDNN graph ms on an H100
# (session 35-36 profiles) beside them.
SHAPES = [
    ("28x28 end 128->512", 256 * 28 * 28, 128, 512, 0.1130),
    ("14x14 end 256->1024", 256 * 14 * 14, 256, 1024, 0.0812),
    ("7x7 end 512->2048", 256 * 7 * 7, 512, 2048, 0.0630),
    ("56x56 end 64->256", 256 * 56 * 56, 64, 256, 0.1988),
]


class HeuristicResult(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspaceSize", ctypes.c_size_t), ("state", ctypes.c_int),
                ("wavesCount", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


def load_cublaslt():
    roots = [os.path.dirname(torch.__file__)] + sys.path
    for root in roots:
        for pattern in ("lib/libcublasLt.so*", "nvidia/cublas/lib/libcublasLt.so*", "../nvidia/cublas/lib/libcublasLt.so*"):
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                try:
                    return ctypes.CDLL(path), path
                except OSError:
                    pass
    return ctypes.CDLL("libcublasLt.so"), "libcublasLt.so"


lt, lt_path = load_cublaslt()
vp = ctypes.c_void_p


def check(status, what):
    if status != 0:
        raise RuntimeError(f"{what}: cublasStatus {status}")


def set_attr(fn, obj, attr, value):
    check(fn(obj, ctypes.c_int(attr), ctypes.byref(value), ctypes.c_size_t(ctypes.sizeof(value))), f"set attribute {attr}")


def layout(dtype, rows, cols, ld):
    h = vp()
    check(lt.cublasLtMatrixLayoutCreate(ctypes.byref(h), ctypes.c_int(dtype), ctypes.c_uint64(rows), ctypes.c_uint64(cols), ctypes.c_int64(ld)), "layout")
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name()}; cuBLASLt {lt.cublasLtGetVersion()} from {lt_path}; torch {torch.__version__}")
    handle = vp()
    check(lt.cublasLtCreate(ctypes.byref(handle)), "create")
    stream = torch.cuda.current_stream().cuda_stream
    ws_bytes = 64 << 20
    workspace = torch.empty(ws_bytes, dtype=torch.uint8, device=dev)
    pref = vp()
    check(lt.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "pref")
    set_attr(lt.cublasLtMatmulPreferenceSetAttribute, pref, PREF_MAX_WORKSPACE, ctypes.c_uint64(ws_bytes))
    gen = torch.Generator(device=dev).manual_seed(1)

    def timed(fn):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / args.iters

    for name, pixels, c, k, engine_ms in SHAPES:
        x = torch.randint(-128, 128, (pixels, c), dtype=torch.int8, device=dev, generator=gen)
        w = torch.randint(-128, 128, (k, c), dtype=torch.int8, device=dev, generator=gen)
        r = torch.randint(-128, 128, (pixels, k), dtype=torch.int8, device=dev, generator=gen)
        alpha = (torch.rand(k, device=dev, generator=gen) * 2e-4 + 1e-4).float()
        bias = (torch.rand(k, device=dev, generator=gen) * 20 - 10).float()
        d = torch.empty(pixels, k, dtype=torch.int8, device=dev)
        xh, wh = x.half(), w.half()
        fp16_ms = timed(lambda: torch.matmul(xh, wh.t()))
        try:
            intmm_ms = timed(lambda: torch._int_mm(x, w.t()))
        except Exception as e:  # noqa: BLE001
            intmm_ms = float("nan")
            print(f"  torch._int_mm: {e}")
        gbytes = (pixels * c + pixels * k * 2) / 1e9
        print(f"\n## {name}: pixels {pixels}, c {c}, k {k}; engine now {engine_ms:.4f} ms; fp16 torch.matmul {fp16_ms:.4f} ms; "
              f"torch._int_mm {intmm_ms:.4f} ms; bytes with residual {gbytes * 1e3:.0f} MB ({gbytes / 3.35e3 * 1e6:.4f} ms at 3.35 TB/s)")
        exact = (x.double() @ w.double().t())
        for residual in (False, True):
            beta = ctypes.c_float(0.25 if residual else 0.0)
            desc = vp()
            check(lt.cublasLtMatmulDescCreate(ctypes.byref(desc), ctypes.c_int(COMPUTE_32I), ctypes.c_int(CUDA_R_32F)), "desc")
            set_attr(lt.cublasLtMatmulDescSetAttribute, desc, DESC_TRANSA, ctypes.c_int(1))
            set_attr(lt.cublasLtMatmulDescSetAttribute, desc, DESC_TRANSB, ctypes.c_int(0))
            set_attr(lt.cublasLtMatmulDescSetAttribute, desc, DESC_POINTER_MODE, ctypes.c_int(MODE_ALPHA_VECTOR_BETA_HOST if residual else MODE_ALPHA_VECTOR_BETA_ZERO))
            set_attr(lt.cublasLtMatmulDescSetAttribute, desc, DESC_EPILOGUE, ctypes.c_uint32(EPILOGUE_RELU_BIAS))
            set_attr(lt.cublasLtMatmulDescSetAttribute, desc, DESC_BIAS_POINTER, ctypes.c_uint64(bias.data_ptr()))
            set_attr(lt.cublasLtMatmulDescSetAttribute, desc, DESC_BIAS_TYPE, ctypes.c_int(CUDA_R_32F))
            a_l, b_l, d_l = layout(CUDA_R_8I, c, k, c), layout(CUDA_R_8I, c, pixels, c), layout(CUDA_R_8I, k, pixels, k)
            results = (HeuristicResult * 16)()
            returned = ctypes.c_int(0)
            status = lt.cublasLtMatmulAlgoGetHeuristic(handle, desc, a_l, b_l, d_l, d_l, pref, ctypes.c_int(16), results, ctypes.byref(returned))
            label = "residual (beta 0.25, C int8)" if residual else "no residual (beta 0)"
            if status != 0 or returned.value == 0:
                print(f"  {label}: heuristics refused (status {status}, {returned.value} algorithms)")
                continue
            cptr = r.data_ptr() if residual else d.data_ptr()
            want = torch.clamp(torch.relu(alpha.double() * exact + (0.25 * r.double() if residual else 0) + bias.double()), -128, 127)
            for i in range(returned.value):
                res = results[i]

                def run(res=res):
                    check(lt.cublasLtMatmul(handle, desc, ctypes.c_void_p(alpha.data_ptr()), ctypes.c_void_p(w.data_ptr()), a_l, ctypes.c_void_p(x.data_ptr()), b_l,
                                            ctypes.byref(beta), ctypes.c_void_p(cptr), d_l, ctypes.c_void_p(d.data_ptr()), d_l, ctypes.byref(res.algo),
                                            ctypes.c_void_p(workspace.data_ptr()), ctypes.c_size_t(ws_bytes), ctypes.c_void_p(stream)), "matmul")
                try:
                    run()
                    torch.cuda.synchronize()
                    diff = (d.double() - want).abs()
                    off1 = int((diff > 0.5).sum())
                    off2 = int((diff > 1.0).sum())
                    rne = torch.round(want)  # torch.round is half to even
                    exact_rne = int((d.double() == rne).sum())
                    ms = timed(run)
                    print(f"  {label} algo {i} (id {res.algo[0]}, waves {res.wavesCount:.2f}, ws {res.workspaceSize}): {ms:.4f} ms "
                          f"= {ms / engine_ms:.2f}x the engine's; values equal to round-half-even {exact_rne}/{d.numel()}, off >0.5 {off1}, off >1 {off2}")
                except RuntimeError as e:
                    print(f"  {label} algo {i}: {e}")
            for h in (a_l, b_l, d_l):
                lt.cublasLtMatrixLayoutDestroy(h)
            lt.cublasLtMatmulDescDestroy(desc)


if __name__ == "__main__":
    main()
