"""The engine's own fp16 product + bias + erf GELU (KernelSource.HalfGemm) outside the engine, to see where its time goes.

Session 55's call 1 found it level with cuBLASLt + the GELU pass in the engine (95.5 us at 8192 x 3072 x 768 with the
per-layer events) where session 54's probe form (gemm8, staged stores) took 89.1 against 102.1. This takes the engine's
exact program text (KernelSource.Prelude + the kernel, dumped to the .cu files beside this script by a throwaway test:
`deferred` and `staged`, its two epilogues), variants of it made by text edits (no GELU, A&S erf, the deferred GELU not
interleaved, no setmaxnreg), compiles each with NVRTC for sm_90a with ptxas's report (registers, spills, the C7510 wgmma
serialization warning), launches it through the driver with its tensor maps encoded as the engine encodes them, checks
its output against PyTorch (fp32 GELU of the fp16 product + bias) and times it with CUDA events beside PyTorch's
F.linear + gelu_ (cuBLASLt + a pass) and cuBLASLt's GELU epilogue (tanh form) in the same run.

    python3 engine_gemm.py --out DIR [--shapes "8192,3072,768;12608,1536,384"] [--variants deferred,staged,...]
"""
import argparse
import ctypes
import os
import statistics
import struct
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

ERF_AS = r"""
__device__ __forceinline__ float bw_erf_as(float x) {
  const float z = fabsf(x);
  float t; asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(t) : "f"(fmaf(0.3275911f, z, 1.f)));
  float p = fmaf(1.061405429f, t, -1.453152027f);
  p = fmaf(p, t, 1.421413741f);
  p = fmaf(p, t, -0.284496736f);
  p = fmaf(p, t, 0.254829592f);
  float e; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(-z * z * 1.4426950408889634f));
  return copysignf(fmaf(-p * t, e, 1.f), x);
}
__device__ __forceinline__ float bw_gelu_as(float x) { return 0.5f * x * (1.f + bw_erf_as(x * 0.70710678118654752f)); }
"""


def variant(name):
    """(source text, dynamic shared bytes, whether its output is the product's) of a variant."""
    base = "deferred" if name.startswith("deferred") else "staged"
    src = open(os.path.join(HERE, f"half_gemm_{base}.cu")).read()
    shared = int(open(os.path.join(HERE, f"shared_{base}.txt")).read())
    cut = src.index("#ifndef BW_ATTENTION_HELPERS")
    head, kernel = src[:cut], src[cut:]
    exact = True
    if name.endswith("-nogelu"):
        kernel = "#define bw_gelu(x) (x)\n" + kernel
        exact = False
    if name.endswith("-as"):
        kernel = ERF_AS + "#define bw_gelu(x) bw_gelu_as(x)\n" + kernel
    if name.endswith("-noregs"):
        kernel = kernel.replace("bw_regs_dec40();", "").replace("bw_regs_inc232();", "")
    if name.endswith("-late"):  # the deferred GELU not interleaved: each tile's after its own products (as staged, through the buffer)
        kernel = kernel.replace("if (prev >= 0) bw_half_gemm_gelu_rows(tb, y, pm, pn, M, N, u, kb * 16 / KB, (kb + 1) * 16 / KB);", "")
        kernel = kernel.replace("prev = tile;\n", "bw_half_gemm_gelu_rows(tb, y, m0 + cw * 64, n0, M, N, u, 0, 16);\n")
    return head + kernel, shared, exact


def nvrtc_cubin(src):
    from cuda.bindings import nvrtc
    err, prog = nvrtc.nvrtcCreateProgram(src.encode(), b"half_gemm.cu", 0, [], [])
    opts = [b"--gpu-architecture=sm_90a", b"--std=c++17", b"-default-device", b"--ptxas-options=-v", b"--ptxas-options=--warn-on-spills"]
    res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    log = buf.decode(errors="replace")
    if res[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError("nvrtc: " + log[:2000])
    _, n = nvrtc.nvrtcGetCUBINSize(prog)
    cubin = b" " * n
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    return cubin, log


cuda = ctypes.CDLL("libcuda.so.1")


def check(status, what):
    if status != 0:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(status, ctypes.byref(name))
        raise RuntimeError(f"{what}: {name.value.decode() if name.value else status}")


def tensor_map(t, rows, cols, box_rows):
    """As ExecutionContext encodes it: fp16, 2-D, box box_rows x 64, 128-byte swizzle, L2 promotion 256 B, zeros past the end."""
    m = (ctypes.c_uint8 * 128)()
    dims = (ctypes.c_uint64 * 2)(cols, rows)
    strides = (ctypes.c_uint64 * 1)(cols * 2)
    box = (ctypes.c_uint32 * 2)(64, box_rows)
    steps = (ctypes.c_uint32 * 2)(1, 1)
    check(cuda.cuTensorMapEncodeTiled(ctypes.byref(m), 6, 2, ctypes.c_void_p(t.data_ptr()), dims, strides, box, steps, 0, 3, 3, 0), "cuTensorMapEncodeTiled")
    return m


class Kernel:
    def __init__(self, cubin, shared):
        self.module = ctypes.c_void_p()
        check(cuda.cuModuleLoadData(ctypes.byref(self.module), ctypes.c_char_p(cubin)), "cuModuleLoadData")
        self.f = ctypes.c_void_p()
        check(cuda.cuModuleGetFunction(ctypes.byref(self.f), self.module, b"half_gemm"), "cuModuleGetFunction")
        check(cuda.cuFuncSetAttribute(self.f, 8, shared), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")
        self.shared = shared

    def bind(self, y, x, wt, bias, m, n, k, sms):
        self.keep = [ctypes.c_uint64(p.data_ptr()) for p in (y, x, wt, bias)]
        self.keep += [tensor_map(x, m, k, 128), tensor_map(wt, n, k, 128)]
        self.keep.append(ctypes.create_string_buffer(struct.pack("<4i", m, n, k, n // 256), 16))
        self.params = (ctypes.c_void_p * len(self.keep))(*[ctypes.addressof(v) for v in self.keep])
        tiles = (m + 127) // 128 * (n // 256)
        self.grid = min(tiles, sms)

    def launch(self):
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        check(cuda.cuLaunchKernel(self.f, self.grid, 1, 1, 384, 1, 1, self.shared, stream, self.params, None), "cuLaunchKernel")


def median_us(fn, reps=25, inner=10):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / inner)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="8192,3072,768;12608,1536,384")
    ap.add_argument("--variants", default="deferred,staged,deferred-nogelu,staged-nogelu,deferred-as,staged-as,deferred-late,deferred-noregs")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "engine_gemm.txt"), "w")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    torch.manual_seed(0)
    torch.zeros(1, device="cuda")  # the primary context, current on this thread
    props = torch.cuda.get_device_properties(0)
    say(f"device {props.name}  SMs {props.multi_processor_count}  torch {torch.__version__}")
    kernels = {}
    for name in args.variants.split(","):
        try:
            src, shared, exact = variant(name)
            cubin, plog = nvrtc_cubin(src)
            kernels[name] = (Kernel(cubin, shared), exact)
            lines = [ln.strip() for ln in plog.splitlines() if "half_gemm" in ln or "Used" in ln or "spill" in ln.lower() or "C7510" in ln or "warning" in ln.lower()]
            say(f"ptxas {name}: " + " | ".join(lines)[:900])
        except Exception as e:  # noqa: BLE001
            say(f"{name}: {str(e)[:600]}")
    for shape in args.shapes.split(";"):
        m, n, k = map(int, shape.split(","))
        x = torch.randn(m, k, device="cuda", dtype=torch.half)
        wt = (torch.randn(n, k, device="cuda") / k ** 0.5).half()
        bias = (torch.randn(n, device="cuda") * 0.5).half()
        ref = F.gelu((x @ wt.t()).float() + bias.float()).half()
        y0 = torch.empty(m, n, device="cuda", dtype=torch.half)

        def library_inplace():
            torch.addmm(bias, x, wt.t(), out=y0)
            torch.ops.aten.gelu_(y0)

        def epilogue_tanh():
            torch._addmm_activation(bias, x, wt.t(), use_gelu=True)

        def product_only():
            torch.addmm(bias, x, wt.t(), out=y0)

        say(f"shape {m} x {n} x {k}: cuBLASLt + bias {median_us(product_only):.1f} us; + GELU pass in place {median_us(library_inplace):.1f}; cuBLASLt GELU epilogue (tanh) {median_us(epilogue_tanh):.1f}")
        for name, (kern, exact) in kernels.items():
            y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.half)
            kern.bind(y, x, wt, bias, m, n, k, props.multi_processor_count)
            kern.launch()
            torch.cuda.synchronize()
            want = ref if exact else ((x @ wt.t()).float() + bias.float()).half()
            err = (y.float() - want.float()).abs().max().item()
            us = median_us(kern.launch)
            say(f"  {name:16s} {us:7.1f} us  max abs {err:.2e}{'' if exact else ' (no GELU: against the product + bias)'}")
    say("done")


if __name__ == "__main__":
    sys.exit(main())
