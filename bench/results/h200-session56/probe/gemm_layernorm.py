"""Does a LayerNorm fused into the product before it pay? A probe for BERT's and DistilBERT's b=64 rows (session 56).

In a post-LN encoder layer the attention's output projection and the MLP's second product (N = 768 = the hidden size)
are each followed by the residual add and a LayerNorm: the engine runs cuBLASLt's product (bias and residual in its
epilogue) and then its LayerNorm kernel, which reads and writes the 12.6 MB activation again (~8 us unprofiled and a
kernel boundary, twice a layer: about 7% of DistilBERT b=64's run on an H100). A block of the engine's own product
(KernelSource.HalfGemm, sessions 52-55) holds 128 rows x 256 columns; a row's 768 columns are three blocks (or four
of 192 columns: --widths), and a row's blocks are one thread-block cluster: each adds the bias and the residual to its
fp32 sums, reduces its rows' sums and squared deviations from its own mean (quad shuffles), leaves them in its shared
memory, and after the cluster barrier reads its peers' through distributed shared memory (mapa) and combines them
(Chan et al.: mean = sum S_i / N, M2 = sum Q_i + c sum (S_i / c - mean)^2, c a block's columns), normalizes, applies
gamma and beta and writes Y once. The statistics are double buffered by tile parity, so one cluster barrier a tile
suffices (a block rewrites a buffer only after every peer has passed the barrier that follows its reads).

The kernel here is written for this probe (not yet the engine's): the engine's program prelude and helpers from session
55's dump (`../../h200-session55/probe/half_gemm_staged.cu`, up to its kernel) plus the kernel below, in two forms from
one text: `ln` (the fused LayerNorm) and `sum` (the same kernel writing bias + residual + product, no LayerNorm, no
cluster barrier: what the LayerNorm costs inside the kernel). Timed with CUDA events beside PyTorch's cuBLASLt product
with the bias and residual as its C (`addmm`, one kernel) and `F.layer_norm` after it, in the same run; outputs checked
against fp32 references. Persistent: a grid of `--clusters` clusters (default all that fit, 132 // 3 = 44; 64 row
tiles at 8192 rows, so two rounds) walks the row tiles; `--clusters 64` is one cluster a tile.

    python3 gemm_layernorm.py --out DIR [--shapes "8192,768,768;8192,768,3072;1024,768,768"] [--clusters 44,64]
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
PRELUDE = os.path.join(SESSION55, "half_gemm_staged.cu")
sys.path.insert(0, SESSION55)
# Session 55's probe: NVRTC for sm_90a with ptxas's report, the driver, tensor maps encoded as the engine encodes them, CUDA-event medians.
from engine_gemm import check, cuda, median_us, nvrtc_cubin, tensor_map  # noqa: E402

KERNEL = r"""
#ifndef BW_CLUSTER_LN
#define BW_CLUSTER_LN
__device__ __forceinline__ void bw_cl_sync() { asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory"); }
__device__ __forceinline__ unsigned bw_cl_rank() { unsigned r; asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r)); return r; }
__device__ __forceinline__ float2 bw_cl_load2(const float2* mine, unsigned rank)
{
    unsigned r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"((unsigned)__cvta_generic_to_shared(mine)), "r"(rank));
    float2 v;
    asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(r) : "memory");
    return v;
}
#endif
struct __align__(8) ln_args { int m; int k; float eps; int pad; };
__device__ __forceinline__ void bw_hold_acc(float* d)
{
    #pragma unroll
    for (int i = 0; i < BW_BN / 2; i++) asm volatile("" : "+f"(d[i]) :: "memory");
}
// Y = LN(X W + bias + R) gamma + beta over rows of N = BW_C x BW_BN (BW_LN 1), or Y = X W + bias + R (BW_LN 0).
extern "C" __global__ void __cluster_dims__(BW_C, 1, 1) __launch_bounds__(384, 1) half_gemm_ln(bw_half* __restrict__ y,
    const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const bw_half* __restrict__ bias,
    const bw_half* __restrict__ res, const bw_half* __restrict__ gamma, const bw_half* __restrict__ beta,
    const __grid_constant__ bw_tensor_map map_x, const __grid_constant__ bw_tensor_map map_w, const ln_args a)
{
    extern __shared__ __align__(1024) unsigned short bw_dynamic_shared_sw128[];
    unsigned char* const sm_ = (unsigned char*)bw_dynamic_shared_sw128;
    unsigned long long* const full = (unsigned long long*)(sm_ + 4 * BW_SB);
    unsigned long long* const empty = full + 4;
    float2* const stats = (float2*)(sm_ + 4 * BW_SB + 64 + 8 * 2304); // two buffers (tile parity) of 128 rows' (sum, M2)
    const int tid = (int)threadIdx.x, wg = tid >> 7;
    const int M = a.m, N = BW_C * BW_BN, K = a.k, KB = K / 64;
    const int n0 = (int)bw_cl_rank() * BW_BN, clusters = (int)gridDim.x / BW_C, rowTiles = (M + 127) / 128;
    if (tid == 0) {
        bw_tma_prefetch(&map_x);
        bw_tma_prefetch(&map_w);
        for (int s = 0; s < 4; s++) { bw_mbar_init(full + s, 1); bw_mbar_init(empty + s, 2); }
        bw_mbar_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        // The producer: one thread copies; the warpgroup keeps the cluster barrier's count with the consumers.
        int it = 0;
        for (int rt = (int)blockIdx.x / BW_C; rt < rowTiles; rt += clusters) {
            if (tid == 0) {
                const int m0 = rt * 128;
                for (int kb = 0; kb < KB; kb++, it++) {
                    const int s = it % 4;
                    if (it >= 4) bw_mbar_wait(empty + s, ((it / 4) & 1) ^ 1);
                    unsigned char* const st = sm_ + s * BW_SB;
                    bw_mbar_expect_tx(full + s, BW_SB);
                    bw_tma_load_2d(st, &map_x, kb * 64, m0, full + s);
                    bw_tma_load_2d(st + 16384, &map_w, kb * 64, n0, full + s);
                    bw_tma_load_2d(st + 16384 + BW_BN / 2 * 128, &map_w, kb * 64, n0 + BW_BN / 2, full + s);
                }
            }
            __syncwarp();
#if BW_LN
            bw_cl_sync();
#endif
        }
#if BW_LN
        bw_cl_sync();
#endif
        return;
    }

    const int cw = wg - 1, u = tid & 127, warp = u >> 5, lane = u & 31, g = lane >> 2;
    unsigned char* const eb = sm_ + 4 * BW_SB + 64 + (cw * 4 + warp) * 2304;
    int it = 0, parity = 0;
    for (int rt = (int)blockIdx.x / BW_C; rt < rowTiles; rt += clusters, parity ^= 1) {
        const int m0 = rt * 128;
        float d[BW_BN / 2];
        #pragma unroll
        for (int i = 0; i < BW_BN / 2; i++) d[i] = 0.f;
        for (int kb = 0; kb < KB; kb++, it++) {
            const int s = it % 4;
            bw_mbar_wait(full + s, (it / 4) & 1);
            bw_fence_proxy_async();
            unsigned char* const st = sm_ + s * BW_SB;
            bw_wgmma_fence();
            bw_hold_acc(d);
            #pragma unroll
            for (int ks = 0; ks < 4; ks++)
                BW_WGMMA(d, bw_wgmma_desc_sw128(st + cw * 8192 + ks * 32), bw_wgmma_desc_sw128(st + 16384 + ks * 32), (kb | ks) != 0);
            bw_wgmma_commit();
            bw_wgmma_wait1();
            bw_hold_acc(d);
            if (kb > 0 && u == 0) bw_mbar_arrive(empty + (it - 1) % 4);
        }
        bw_wgmma_wait0();
        bw_hold_acc(d);
        if (u == 0) bw_mbar_arrive(empty + (it - 1) % 4);

        // v = sums + bias + R: the warp's 16 rows x 64 columns of R at a time through its buffer (whole 128-byte rows
        // read), then each thread's fragment (rows g and g + 8, columns 2t and 2t + 1 of each n8 tile).
        const int row0 = m0 + cw * 64 + warp * 16;
        #pragma unroll
        for (int c = 0; c < BW_BN / 64; c++) {
            #pragma unroll
            for (int q = 0; q < 4; q++) {
                const int rr = q * 4 + (lane >> 3), ch = lane & 7;
                *(uint4*)(eb + rr * 144 + ch * 16) = row0 + rr < M ? *(const uint4*)(res + (size_t)(row0 + rr) * N + n0 + c * 64 + ch * 8) : make_uint4(0, 0, 0, 0);
            }
            __syncwarp();
            #pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                const int j = c * 8 + jj, cl = jj * 8 + (lane & 3) * 2, col = n0 + c * 64 + cl;
                const float b0 = (float)bias[col], b1 = (float)bias[col + 1];
                const unsigned r0 = *(const unsigned*)(eb + g * 144 + cl * 2), r1 = *(const unsigned*)(eb + (g + 8) * 144 + cl * 2);
                d[4 * j] += b0 + bw_half_lo(r0);
                d[4 * j + 1] += b1 + bw_half_hi(r0);
                d[4 * j + 2] += b0 + bw_half_lo(r1);
                d[4 * j + 3] += b1 + bw_half_hi(r1);
            }
            __syncwarp();
        }
#if BW_LN
        // This block's 256 columns of rows g and g + 8: their sum and squared deviations from their own mean.
        float sa = 0.f, sb = 0.f;
        #pragma unroll
        for (int j = 0; j < BW_BN / 8; j++) { sa += d[4 * j] + d[4 * j + 1]; sb += d[4 * j + 2] + d[4 * j + 3]; }
        sa += __shfl_xor_sync(0xffffffffu, sa, 1); sa += __shfl_xor_sync(0xffffffffu, sa, 2);
        sb += __shfl_xor_sync(0xffffffffu, sb, 1); sb += __shfl_xor_sync(0xffffffffu, sb, 2);
        const float la = sa * (1.f / BW_BN), lb = sb * (1.f / BW_BN);
        float qa = 0.f, qb = 0.f;
        #pragma unroll
        for (int j = 0; j < BW_BN / 8; j++) {
            float e = d[4 * j] - la; qa = fmaf(e, e, qa);
            e = d[4 * j + 1] - la; qa = fmaf(e, e, qa);
            e = d[4 * j + 2] - lb; qb = fmaf(e, e, qb);
            e = d[4 * j + 3] - lb; qb = fmaf(e, e, qb);
        }
        qa += __shfl_xor_sync(0xffffffffu, qa, 1); qa += __shfl_xor_sync(0xffffffffu, qa, 2);
        qb += __shfl_xor_sync(0xffffffffu, qb, 1); qb += __shfl_xor_sync(0xffffffffu, qb, 2);
        float2* const mine = stats + parity * 128;
        const int ia = cw * 64 + warp * 16 + g, ib = ia + 8;
        if ((lane & 3) == 0) { mine[ia] = make_float2(sa, qa); mine[ib] = make_float2(sb, qb); }
        bw_cl_sync();
        float2 pa[BW_C], pb[BW_C];
        float ta = 0.f, tb = 0.f;
        #pragma unroll
        for (int r = 0; r < BW_C; r++) { pa[r] = bw_cl_load2(mine + ia, (unsigned)r); pb[r] = bw_cl_load2(mine + ib, (unsigned)r); ta += pa[r].x; tb += pb[r].x; }
        const float meanA = ta * (1.f / N), meanB = tb * (1.f / N);
        float ma = 0.f, mb = 0.f;
        #pragma unroll
        for (int r = 0; r < BW_C; r++) {
            const float ea = pa[r].x * (1.f / BW_BN) - meanA, eb2 = pb[r].x * (1.f / BW_BN) - meanB;
            ma += pa[r].y + (float)BW_BN * ea * ea;
            mb += pb[r].y + (float)BW_BN * eb2 * eb2;
        }
        const float rA = rsqrtf(ma * (1.f / N) + a.eps), rB = rsqrtf(mb * (1.f / N) + a.eps);
#endif
        #pragma unroll
        for (int c = 0; c < BW_BN / 64; c++) {
            #pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                const int j = c * 8 + jj, cl = jj * 8 + (lane & 3) * 2, col = n0 + c * 64 + cl;
#if BW_LN
                const float g0 = (float)gamma[col], g1 = (float)gamma[col + 1], e0 = (float)beta[col], e1 = (float)beta[col + 1];
                *(unsigned*)(eb + g * 144 + cl * 2) = bw_pack_half2(fmaf((d[4 * j] - meanA) * rA, g0, e0), fmaf((d[4 * j + 1] - meanA) * rA, g1, e1));
                *(unsigned*)(eb + (g + 8) * 144 + cl * 2) = bw_pack_half2(fmaf((d[4 * j + 2] - meanB) * rB, g0, e0), fmaf((d[4 * j + 3] - meanB) * rB, g1, e1));
#else
                *(unsigned*)(eb + g * 144 + cl * 2) = bw_pack_half2(d[4 * j], d[4 * j + 1]);
                *(unsigned*)(eb + (g + 8) * 144 + cl * 2) = bw_pack_half2(d[4 * j + 2], d[4 * j + 3]);
#endif
            }
            __syncwarp();
            #pragma unroll
            for (int q = 0; q < 4; q++) {
                const int rr = q * 4 + (lane >> 3), ch = lane & 7;
                if (row0 + rr < M) *(uint4*)(y + (size_t)(row0 + rr) * N + n0 + c * 64 + ch * 8) = *(const uint4*)(eb + rr * 144 + ch * 16);
            }
            __syncwarp();
        }
    }
#if BW_LN
    bw_cl_sync(); // no block leaves while a peer may still read its statistics
#endif
}
"""

def stage_bytes(bn):
    return 128 * 64 * 2 + bn * 64 * 2  # A's 128 x 64 halves, then W^T's bn x 64


def shared_bytes(bn):
    return 4 * stage_bytes(bn) + 64 + 8 * 2304 + 2 * 128 * 8  # four stages, mbarriers, the eight warps' buffers, the statistics


def wgmma_helper(bn):
    """m64n{bn}k16 with fp32 sums, both operands from shared memory (as KernelSource's m64n256k16 helper)."""
    acc = bn // 2
    outs = ", ".join(f"%{i}" for i in range(acc))
    binds = ", ".join(f'"+f"(d[{i}])' for i in range(acc))
    return (f"__device__ __forceinline__ void bw_wgmma_64n{bn}k16_f16(float* d, unsigned long long da, unsigned long long db, int accumulate)\n{{\n"
            f'    asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{acc + 2}, 0;\\n"\n'
            f'        "wgmma.mma_async.sync.aligned.m64n{bn}k16.f32.f16.f16 {{{outs}}}, %{acc}, %{acc + 1}, p, 1, 1, 0, 0;\\n}}\\n"\n'
            f'        : {binds}\n        : "l"(da), "l"(db), "r"(accumulate));\n}}\n')


def source(n, bn, layer_norm):
    """The probe's program: N = (N / bn) blocks of bn columns a cluster; BW_LN 1 fuses the LayerNorm."""
    text = open(PRELUDE).read()
    head = text[:text.index("struct __align__(8) half_gemm_args")]
    defines = (f"#define BW_C {n // bn}\n#define BW_BN {bn}\n#define BW_SB {stage_bytes(bn)}\n#define BW_LN {1 if layer_norm else 0}\n"
               f"#define BW_WGMMA bw_wgmma_64n{bn}k16_f16\n")
    return defines + head + (wgmma_helper(bn) if bn != 256 else "") + KERNEL


class Kernel:
    def __init__(self, cubin, bn):
        self.bn, self.shared = bn, shared_bytes(bn)
        self.module = ctypes.c_void_p()
        check(cuda.cuModuleLoadData(ctypes.byref(self.module), ctypes.c_char_p(cubin)), "cuModuleLoadData")
        self.f = ctypes.c_void_p()
        check(cuda.cuModuleGetFunction(ctypes.byref(self.f), self.module, b"half_gemm_ln"), "cuModuleGetFunction")
        check(cuda.cuFuncSetAttribute(self.f, 8, self.shared), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")

    def bind(self, tensors, m, n, k, eps, clusters):
        y, x, wt, bias, res, gamma, beta = tensors
        self.keep = [ctypes.c_uint64(p.data_ptr()) for p in (y, x, wt, bias, res, gamma, beta)]
        self.keep += [tensor_map(x, m, k, 128), tensor_map(wt, n, k, self.bn // 2)]
        self.keep.append(ctypes.create_string_buffer(struct.pack("<iifi", m, k, eps, 0), 16))
        self.params = (ctypes.c_void_p * len(self.keep))(*[ctypes.addressof(v) for v in self.keep])
        self.grid = (n // self.bn) * clusters

    def launch(self):
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        check(cuda.cuLaunchKernel(self.f, self.grid, 1, 1, 384, 1, 1, self.shared, stream, self.params, None), "cuLaunchKernel")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="8192,768,768;8192,768,3072;1024,768,768")
    ap.add_argument("--clusters", default="", help="clusters a launch (comma-separated); default: all that fit, and one a row tile")
    ap.add_argument("--widths", default="256,192", help="a block's columns (wgmma N): 256 (three blocks a 768-wide row) or 192 (four)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "gemm_layernorm.txt"), "w")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    torch.manual_seed(0)
    torch.zeros(1, device="cuda")  # the primary context, current on this thread
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    say(f"device {props.name}  SMs {sms}  torch {torch.__version__}")
    eps = 1e-12  # BERT's and DistilBERT's
    kernels = {}
    for shape in args.shapes.split(";"):
        m, n, k = map(int, shape.split(","))
        widths = [bn for bn in map(int, args.widths.split(",")) if n % bn == 0 and n // bn <= 8]
        for bn in widths:
            for form in ("sum", "ln"):
                if (n, bn, form) not in kernels:
                    try:
                        cubin, plog = nvrtc_cubin(source(n, bn, form == "ln"))
                        kernels[(n, bn, form)] = Kernel(cubin, bn)
                        lines = [ln.strip() for ln in plog.splitlines() if "Used" in ln or "spill" in ln.lower() or "C7510" in ln or "warning" in ln.lower()]
                        say(f"ptxas {form} N={n} blocks of {bn}: " + " | ".join(lines)[:700])
                    except Exception as e:  # noqa: BLE001 - one form failing must not lose the other's numbers
                        kernels[(n, bn, form)] = None
                        say(f"{form} N={n} blocks of {bn}: {str(e)[:1500]}")
        x = torch.randn(m, k, device="cuda", dtype=torch.half)
        wt = (torch.randn(n, k, device="cuda") / k ** 0.5).half()
        bias = (torch.randn(n, device="cuda") * 0.5).half()
        res = torch.randn(m, n, device="cuda", dtype=torch.half)
        gamma = (1 + 0.1 * torch.randn(n, device="cuda")).half()
        beta = (0.1 * torch.randn(n, device="cuda")).half()
        v = (x @ wt.t()).float() + bias.float() + res.float()
        refs = {"sum": v.half(), "ln": F.layer_norm(v, (n,), gamma.float(), beta.float(), eps).half()}
        rb = res + bias  # the residual and the bias as cuBLASLt's C, as the engine folds both into the product
        y0 = torch.empty(m, n, device="cuda", dtype=torch.half)
        product = median_us(lambda: torch.addmm(rb, x, wt.t(), out=y0))
        norm = median_us(lambda: F.layer_norm(y0, (n,), gamma, beta, eps))

        def both():
            torch.addmm(rb, x, wt.t(), out=y0)
            F.layer_norm(y0, (n,), gamma, beta, eps)

        say(f"shape {m} x {n} x {k}: cuBLASLt product + bias + residual {product:.1f} us; F.layer_norm {norm:.1f}; both in turn {median_us(both):.1f}")
        row_tiles = (m + 127) // 128
        for bn, form in [(bn, form) for bn in widths for form in ("sum", "ln")]:
            kern = kernels.get((n, bn, form))
            if kern is None:
                continue
            fit = sms // (n // bn)
            for clusters in [int(c) for c in args.clusters.split(",") if c] or sorted({min(row_tiles, fit), row_tiles}):
                y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.half)
                try:
                    kern.bind((y, x, wt, bias, res, gamma, beta), m, n, k, eps, clusters)
                    kern.launch()
                    torch.cuda.synchronize()
                    err = (y.float() - refs[form].float()).abs().max().item()
                    us = median_us(kern.launch)
                    say(f"  own {form:3s} {clusters:3d} clusters of {n // bn} x {bn} columns: {us:7.1f} us  max abs {err:.2e} (against {'LN of ' if form == 'ln' else ''}the fp32 product + bias + residual)")
                except Exception as e:  # noqa: BLE001
                    say(f"  own {form} {clusters} clusters: {str(e)[:600]}")
                    torch.cuda.synchronize()
    say("done")


if __name__ == "__main__":
    sys.exit(main())
