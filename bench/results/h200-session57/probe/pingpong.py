"""The own fp16 product + bias + erf GELU (KernelSource.HalfGemm) in three schedules, outside the engine (session 57).

Session 55 found the cooperative form (both consumer warpgroups on one 128 x 256 tile, then both in its epilogue) at
82.8 us at 8192 x 3072 x 768 on an H100 against 65.5 without the GELU: the tensor cores wait while the GELU is computed.
The ping-pong form (KernelSource.HalfGemmPingPong, BATCHWISE_GELU_PRODUCT=pingpong since session 57: each consumer
warpgroup its own 128 x 128 tile, the two taking turns at the tensor cores, one's epilogue running while the other's
products do) should hide it, unless its smaller tiles' extra copies of the operands cost more (session 54's ping-pong of
64 x 256 tiles: 95.3 us without the GELU); so should the handoff form (KernelSource.HalfGemmHandoff,
BATCHWISE_GELU_PRODUCT=handoff: the cooperative tiles in three stages, the biased sums staged in shared memory as halves,
the GELU and stores by three warps of the producer warpgroup while the consumers go on). This takes the three programs as the engine writes them at 8192 x 3072 x 768 (KernelSource.Prelude
+ the kernel, dumped beside this script by a throwaway test: half_gemm_coop.cu, KernelSource.HalfGemm, byte for byte the
kernel of main at 87a0a6c7; half_gemm_pp.cu, KernelSource.HalfGemmPingPong; half_gemm_ho.cu, KernelSource.HalfGemmHandoff; M, N, K are run-time arguments, so one text
serves every shape), each also without its GELU (a text edit), compiles each with NVRTC
for sm_90a with ptxas's report, launches it through the driver with its tensor maps encoded as the engine encodes them,
checks it against PyTorch (fp32 GELU of the fp16 product + bias) and times it with CUDA events beside cuBLASLt + bias
(F.linear's addmm) and that + PyTorch's GELU pass in place, in the same run.

    python3 pingpong.py --out DIR [--shapes "8192,3072,768;..."] [--variants coop,handoff,...]
"""
import argparse
import ctypes
import os
import struct
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION55 = os.path.join(HERE, "..", "..", "h200-session55", "probe")
sys.path.insert(0, SESSION55)
# Session 55's probe: NVRTC for sm_90a with ptxas's report, the driver, tensor maps encoded as the engine encodes them, CUDA-event medians.
from engine_gemm import check, cuda, median_us, nvrtc_cubin, tensor_map  # noqa: E402

# name: (dump, tile columns, W^T box rows, with GELU)
VARIANTS = {
    "coop": ("coop", 256, 128, True),
    "coop-nogelu": ("coop", 256, 128, False),
    "pingpong": ("pp", 128, 64, True),
    "pingpong-nogelu": ("pp", 128, 64, False),
    "handoff": ("ho", 256, 128, True),
    "handoff-nogelu": ("ho", 256, 128, False),
}


def source(dump, gelu):
    src = open(os.path.join(HERE, f"half_gemm_{dump}.cu")).read()
    if not gelu:
        cut = src.index("extern \"C\" __global__ void __launch_bounds__(384, 1) half_gemm(")
        src = src[:cut] + "#define bw_gelu_as(x) (x)\n" + src[cut:]
    return src, int(open(os.path.join(HERE, f"shared_{dump}.txt")).read())


class Kernel:
    def __init__(self, cubin, shared, columns, box):
        self.module = ctypes.c_void_p()
        check(cuda.cuModuleLoadData(ctypes.byref(self.module), ctypes.c_char_p(cubin)), "cuModuleLoadData")
        self.f = ctypes.c_void_p()
        check(cuda.cuModuleGetFunction(ctypes.byref(self.f), self.module, b"half_gemm"), "cuModuleGetFunction")
        check(cuda.cuFuncSetAttribute(self.f, 8, shared), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")
        self.shared, self.columns, self.box = shared, columns, box

    def bind(self, y, x, wt, bias, m, n, k, sms):
        self.keep = [ctypes.c_uint64(p.data_ptr()) for p in (y, x, wt, bias)]
        self.keep += [tensor_map(x, m, k, 128), tensor_map(wt, n, k, self.box)]
        self.keep.append(ctypes.create_string_buffer(struct.pack("<4i", m, n, k, n // self.columns), 16))
        self.params = (ctypes.c_void_p * len(self.keep))(*[ctypes.addressof(v) for v in self.keep])
        self.grid = min((m + 127) // 128 * (n // self.columns), sms)

    def launch(self):
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        check(cuda.cuLaunchKernel(self.f, self.grid, 1, 1, 384, 1, 1, self.shared, stream, self.params, None), "cuLaunchKernel")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="8192,3072,768;12608,1536,384;12608,3072,768;12544,1536,384;1576,1536,384;8192,768,768;8192,768,3072;8192,2304,768")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "pingpong.txt"), "w")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    torch.manual_seed(0)
    torch.zeros(1, device="cuda")
    props = torch.cuda.get_device_properties(0)
    say(f"device {props.name}  SMs {props.multi_processor_count}  torch {torch.__version__}")
    kernels = {}
    for name in args.variants.split(","):
        dump, columns, box, gelu = VARIANTS[name]
        try:
            src, shared = source(dump, gelu)
            cubin, plog = nvrtc_cubin(src)
            kernels[name] = (Kernel(cubin, shared, columns, box), gelu)
            lines = [ln.strip() for ln in plog.splitlines() if "Used" in ln or "spill" in ln.lower() or "C7510" in ln]
            say(f"ptxas {name}: " + " | ".join(lines)[:600])
        except Exception as e:  # noqa: BLE001
            say(f"{name}: {str(e)[:600]}")
    for shape in args.shapes.split(";"):
        m, n, k = map(int, shape.split(","))
        x = torch.randn(m, k, device="cuda", dtype=torch.half)
        wt = (torch.randn(n, k, device="cuda") / k ** 0.5).half()
        bias = (torch.randn(n, device="cuda") * 0.5).half()
        product = (x @ wt.t()).float() + bias.float()
        ref = F.gelu(product).half()
        y0 = torch.empty(m, n, device="cuda", dtype=torch.half)

        def library_inplace():
            torch.addmm(bias, x, wt.t(), out=y0)
            torch.ops.aten.gelu_(y0)

        def product_only():
            torch.addmm(bias, x, wt.t(), out=y0)

        say(f"shape {m} x {n} x {k}: cuBLASLt + bias {median_us(product_only):.1f} us; + GELU pass in place {median_us(library_inplace):.1f}")
        for name, (kern, gelu) in kernels.items():
            if n % kern.columns:
                continue
            y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.half)
            kern.bind(y, x, wt, bias, m, n, k, props.multi_processor_count)
            kern.launch()
            torch.cuda.synchronize()
            want = ref if gelu else product.half()
            err = (y.float() - want.float()).abs().max().item()
            us = median_us(kern.launch)
            say(f"  {name:16s} {us:7.1f} us  max abs {err:.2e}  grid {kern.grid}{'' if gelu else ' (no GELU: against the product + bias)'}")
    say("done")


if __name__ == "__main__":
    sys.exit(main())
