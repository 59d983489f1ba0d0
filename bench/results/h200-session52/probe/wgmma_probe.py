"""Session 52 probe: an fp16 GEMM on Hopper's warpgroup MMA with the bias and the exact (erf) GELU applied to the
accumulators before one fp16 write, against what the engine's plan does now (cuBLASLt's product with its bias, then the
GELU pass) and against Triton's fused kernel, at the MLP's first product of DistilBERT / BERT (b=64: 8192 x 3072 x 768),
ViT-B / HF ViT (b=64: 12608 x 3072 x 768) and ViT-S (12608 x 1536 x 384). The kernel is written here first (compiled by
NVRTC through CuPy, sm_90a) to find its tile, stages and rate before it goes into the engine.

Layout: A row-major [M, K] (the activations); B pre-arranged on the host into the shared-memory image each stage copies
(tile of BN rows of W^T by BK: 8-row groups SBO = BK * 16 bytes apart, 16-byte core-matrix columns 128 bytes apart, rows
16 bytes apart: wgmma's K-major layout without swizzle); A copied into the same layout by cp.async, 16 bytes a thread.
Two warpgroups each own 64 rows of the BM = 128 x BN tile; STAGES buffers, loads DIST = STAGES - 2 ahead.

Session 53 added the persistent forms (the 11th config field, the variant, 5 to 8; the 13th, the grid, 132 for an
H100): gemm5 (one block an SM walking the tiles, a producer warpgroup filling one ring of stages across tiles by
cp.async), gemm6 (its copies by TMA: A's box by a tensor copy, B's packed image by a bulk copy), gemm7 (gemm6 in
clusters of two sharing B by a multicast bulk copy), gemm8 (B by tensor copies of W^T too; clusters of the 9th field's
size, 2 multicasting B; CTA-scope barrier waits and remote arrivals as cutlass's ClusterBarrier; NOLOAD / NOMMA, the 6th
and 7th fields, leave out the copies or the products; EPI 2 the stores), gemm9 (ping-pong: 64 x BN tiles, the two
consumer warpgroups on alternate tiles, one's epilogue under the other's products; prepared, not yet run).
bench/results/h200-session53/README.md has what they measured; probe/syntax_check.py there checks a config's source.
"""
import argparse
import json
import math
import statistics
import sys

import cupy as cp
import torch
import torch.nn.functional as F

# erf by Abramowitz & Stegun 7.1.26 on |x|, sign restored: 1 - (a1 t + .. + a5 t^5) e^{-x^2}, t = 1 / (1 + p |x|) (|error|
# <= 1.5e-7; one rcp, one exp2, no branch). gelu_probe.py's pass and this probe's epilogue (GELU_AS) both take it.
ERF_AS = r"""
__device__ __forceinline__ float erf_as(float x) {
  const float z = fabsf(x);
  float t; asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(t) : "f"(fmaf(0.3275911f, z, 1.f)));
  float p = fmaf(1.061405429f, t, -1.453152027f);
  p = fmaf(p, t, 1.421413741f);
  p = fmaf(p, t, -0.284496736f);
  p = fmaf(p, t, 0.254829592f);
  float e; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(-z * z * 1.4426950408889634f));
  return copysignf(fmaf(-p * t, e, 1.f), x);
}
"""

SRC = r"""
#include <cuda_fp16.h>
#define BM 128
#define DIST (STAGES - 2)
#define SBO (BK * 16)
#define A_BYTES (BM * BK * 2)
#define B_BYTES (BN * BK * 2)
#define STAGE_BYTES (A_BYTES + B_BYTES)
#if SWZ
#define KSTEP 32
#else
#define KSTEP 256
#endif

__device__ __forceinline__ void cp16(unsigned dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory"); }
#if SWZ
#undef SBO
#define SBO 1024
__device__ __forceinline__ unsigned long long desc(unsigned addr) {
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ unsigned place(int g, int c, int r) { return g * 1024 + r * 128 + ((c ^ r) << 4); }
#else
__device__ __forceinline__ unsigned long long desc(unsigned addr) {
  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)(128 >> 4) << 16) | ((unsigned long long)((SBO & 0x3FFFF) >> 4) << 32);
}
__device__ __forceinline__ unsigned place(int g, int c, int r) { return g * SBO + c * 128 + r * 16; }
#endif
__device__ __forceinline__ void hold(float* d) {
  #pragma unroll
  for (int i = 0; i < BN / 2; i++) asm volatile("" : "+f"(d[i]) :: "memory");
}
__device__ __forceinline__ void mma(float* d, unsigned long long da, unsigned long long db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %__P__, 0;\n"
    "wgmma.mma_async.sync.aligned.m64n__BN__k16.f32.f16.f16 {__DLIST__}, %__A__, %__B__, p, 1, 1, 0, 0;\n}\n"
    : __DOUT__
    : "l"(da), "l"(db), "r"(acc));
}
#if GELU_AS
// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7; one rcp, one exp2, no branch): call 7 put its cost from L2 at
// a third of erff's over the pass's copy.
__ERF_AS__
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.f + erf_as(x * 0.70710678118654752f)); }
#else
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
#endif

// A stage's copies by T threads (256: every thread of the plain forms; 128: the producer warpgroup of the
// warp-specialized ones): A's rows placed by place(), rows past M zero-filled; B's packed image as it is.
template <int T>
__device__ __forceinline__ void load_stage(unsigned sb, const __half* A, const __half* Bp, int m0, int M, int K, int kb, int nt, int KB, int tid) {
  #pragma unroll
  for (int it = 0; it < BM * BK / 8 / T; it++) {
    const int i = it * T + tid;
    const int r = i & 7, c = (i >> 3) % (BK / 8), g = i / (8 * (BK / 8));
    const int grow = m0 + g * 8 + r;
    const __half* src = A + (size_t)(grow < M ? grow : M - 1) * K + kb * BK + c * 8;
    cp16(sb + place(g, c, r), src, grow < M ? 16 : 0);
  }
  const __half* bs = Bp + ((size_t)nt * KB + kb) * (BN * BK);
  #pragma unroll
  for (int it = 0; it < BN * BK / 8 / T; it++) {
    const int i = it * T + tid;
    cp16(sb + A_BYTES + i * 16, bs + i * 8, 16);
  }
}

// mbarriers, bulk and tensor copies, clusters: one definition each for every variant that uses them (an unused one
// costs nothing). Scope: mbar_wait / mbar_arrive_remote are the CTA-scope forms cutlass's ClusterBarrier uses (gemm5,
// gemm6, gemm8, session 52's gemm_ws); mbar_wait_cluster / mbar_arrive_cluster the acquire.cluster / release.cluster
// forms session 52's gemm_wsc, gemm4 and gemm7 ran with (20-55% slower: session 53).
__device__ __forceinline__ void mbar_init(unsigned a, unsigned count) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(a), "r"(count) : "memory"); }
__device__ __forceinline__ void mbar_expect(unsigned a, unsigned bytes) { asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(a), "r"(bytes) : "memory"); }
__device__ __forceinline__ void mbar_wait(unsigned a, unsigned parity) {
  asm volatile("{\n.reg .pred P;\nLAB_WAIT:\nmbarrier.try_wait.parity.shared::cta.b64 P, [%0], %1;\n@!P bra LAB_WAIT;\n}\n" :: "r"(a), "r"(parity) : "memory");
}
__device__ __forceinline__ void mbar_wait_cluster(unsigned a, unsigned parity) {
  asm volatile("{\n.reg .pred P;\nLAB_WAIT:\nmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 P, [%0], %1;\n@!P bra LAB_WAIT;\n}\n" :: "r"(a), "r"(parity) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned a) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(a) : "memory"); }
__device__ __forceinline__ void mbar_arrive_remote(unsigned a, unsigned rank) {
  asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\nmbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" :: "r"(a), "r"(rank) : "memory");
}
__device__ __forceinline__ void mbar_arrive_cluster(unsigned a, unsigned rank) {
  asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\nmbarrier.arrive.release.cluster.shared::cluster.b64 _, [ra];\n}\n" :: "r"(a), "r"(rank) : "memory");
}
__device__ __forceinline__ void cp_arrive(unsigned a) { asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(a) : "memory"); }
__device__ __forceinline__ void tma2d(unsigned dst, const void* tmap, int x, int y, unsigned bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" :: "r"(dst), "l"(tmap), "r"(x), "r"(y), "r"(bar) : "memory");
}
__device__ __forceinline__ void tma2d_mc(unsigned dst, const void* tmap, int x, int y, unsigned bar, unsigned short mask) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;" :: "r"(dst), "l"(tmap), "r"(x), "r"(y), "r"(bar), "h"(mask) : "memory");
}
__device__ __forceinline__ void bulk(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" :: "r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
__device__ __forceinline__ void bulk_mc(unsigned dst, const void* src, unsigned bytes, unsigned bar, unsigned short mask) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, [%3], %4;" :: "r"(dst), "l"(src), "r"(bytes), "r"(bar), "h"(mask) : "memory");
}
__device__ __forceinline__ unsigned cluster_rank() { unsigned r; asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r)); return r; }
__device__ __forceinline__ void cluster_sync() { asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory"); }
// A warp's rows of the tile from its accumulators: the bias, the GELU where act, one fp16 write (EPI 2: a store no value
// takes, so the work stays and nothing is written). Rows row and row + 8, columns n0 + 8j + 2(lane % 4) and the next.
__device__ __forceinline__ void store_tile(const float* d, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int row, int n0, int lane, int act) {
  #pragma unroll
  for (int j = 0; j < BN / 8; j++) {
    const int col = n0 + j * 8 + (lane & 3) * 2;
    const float b0 = __half2float(bias[col]), b1 = __half2float(bias[col + 1]);
    float v0 = d[4 * j] + b0, v1 = d[4 * j + 1] + b1, v2 = d[4 * j + 2] + b0, v3 = d[4 * j + 3] + b1;
    if (act) { v0 = gelu(v0); v1 = gelu(v1); v2 = gelu(v2); v3 = gelu(v3); }
#if EPI == 2
    if (v0 == -12345.f) *(__half2*)(Y + (size_t)row * N + col) = __floats2half2_rn(v0, v1);
    if (v2 == -12345.f) *(__half2*)(Y + (size_t)(row + 8) * N + col) = __floats2half2_rn(v2, v3);
#else
    if (row < M) *(__half2*)(Y + (size_t)row * N + col) = __floats2half2_rn(v0, v1);
    if (row + 8 < M) *(__half2*)(Y + (size_t)(row + 8) * N + col) = __floats2half2_rn(v2, v3);
#endif
  }
}

// EPI 3 (session 54): the tile through shared memory. Session 54's call 1 found gemm8's half2 stores (a warp's store
// instruction: 8 rows x 16 bytes) cost ~35 us of its 97.7 at 8192 x 3072 x 768 (no stores: 62.4, cuBLASLt's 61.7). Here a
// warp writes 64 columns of its 16 rows into its own 16 x 144-byte buffer (the pad makes the 8 rows' half2 writes hit 32
// banks), then every lane reads 16 bytes and the warp stores whole 128-byte rows. The buffers are the last
// 8 x 2,304 bytes of the dynamic shared memory (the host adds them), one a consumer warp (warp index wi 0-7).
#define EBUF_ROW 144
#define EBUF_WARP (16 * EBUF_ROW)
__device__ __forceinline__ void store_tile_staged(const float* d, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int row, int n0, int lane, int act, int wi) {
  extern __shared__ __align__(1024) unsigned char smem[];
  unsigned dyn; asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
  unsigned char* ebuf = smem + dyn - 8 * EBUF_WARP + wi * EBUF_WARP;
  const int r = lane >> 2, row0 = row - r;
  #pragma unroll
  for (int c = 0; c < BN / 64; c++) {
    #pragma unroll
    for (int jj = 0; jj < 8; jj++) {
      const int j = c * 8 + jj, cl = jj * 8 + (lane & 3) * 2;
      const __half2 bb = *(const __half2*)(bias + n0 + c * 64 + cl);
      const float b0 = __low2float(bb), b1 = __high2float(bb);
      float v0 = d[4 * j] + b0, v1 = d[4 * j + 1] + b1, v2 = d[4 * j + 2] + b0, v3 = d[4 * j + 3] + b1;
      if (act) { v0 = gelu(v0); v1 = gelu(v1); v2 = gelu(v2); v3 = gelu(v3); }
      *(__half2*)(ebuf + r * EBUF_ROW + cl * 2) = __floats2half2_rn(v0, v1);
      *(__half2*)(ebuf + (r + 8) * EBUF_ROW + cl * 2) = __floats2half2_rn(v2, v3);
    }
    __syncwarp();
    #pragma unroll
    for (int it = 0; it < 4; it++) {
      const int rr = it * 4 + (lane >> 3), ch = lane & 7;
      const uint4 v = *(const uint4*)(ebuf + rr * EBUF_ROW + ch * 16);
      if (row0 + rr < M) *(uint4*)(Y + (size_t)(row0 + rr) * N + n0 + c * 64 + ch * 8) = v;
    }
    __syncwarp();
  }
}
// The persistent kernels' epilogue: EPI 3 staged, else store_tile (EPI 2 inside it: no stores).
__device__ __forceinline__ void store_any(const float* d, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int row, int n0, int lane, int act, int wi) {
#if EPI == 3
  store_tile_staged(d, bias, Y, M, N, row, n0, lane, act, wi);
#else
  store_tile(d, bias, Y, M, N, row, n0, lane, act);
#endif
}

extern "C" __global__ void __launch_bounds__(256, MINB) gemm_bias_gelu(const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int nt = blockIdx.x, m0 = blockIdx.y * BM, n0 = nt * BN;
  const int KB = K / BK;
  float d[BN / 2];
  #pragma unroll
  for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
  #pragma unroll
  for (int s = 0; s < DIST; s++) { if (s < KB) load_stage<256>(s0 + s * STAGE_BYTES, A, Bp, m0, M, K, s, nt, KB, tid); cp_commit(); }
  for (int kb = 0; kb < KB; kb++) {
#if NOLOAD
    if (kb < DIST) cp_wait<0>();
#else
    cp_wait<DIST - 1>();
#endif
    fence_async();
    __syncthreads();
    const int nk = kb + DIST;
#if !NOLOAD
    if (nk < KB) load_stage<256>(s0 + (nk % STAGES) * STAGE_BYTES, A, Bp, m0, M, K, nk, nt, KB, tid);
#endif
    cp_commit();
    const unsigned st = s0 + (kb % STAGES) * STAGE_BYTES;
    wg_fence();
    hold(d);
    #pragma unroll
#if !NOMMA
    for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + wg * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
#endif
    wg_commit();
#if MIDHOLD
    hold(d);
#endif
    wg_wait<1>();
    hold(d);
  }
  wg_wait<0>();
  hold(d);
  const int row = m0 + wg * 64 + warp * 16 + (lane >> 2);
  store_tile(d, bias, Y, M, N, row, n0, lane, act);
}
#if WS


// Warp-specialized: warpgroup 0 copies (cp.async, each thread's completion arriving on the stage's full barrier), warpgroups
// 1 and 2 multiply (64 rows each) and release a stage on its empty barrier once their products that read it are done.
#if WS == 1
extern "C" __global__ void __launch_bounds__(384, 1) gemm_ws(const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  const int nt = blockIdx.x, m0 = blockIdx.y * BM, n0 = nt * BN;
  const int KB = K / BK;
  if (tid == 0) {
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 128); mbar_init(empty0 + s * 8, 2); }
  }
  __syncthreads();
  if (wg == 0) {
    for (int kb = 0; kb < KB; kb++) {
      const int s = kb % STAGES;
      if (kb >= STAGES) mbar_wait(empty0 + s * 8, ((kb / STAGES) & 1) ^ 1);
      load_stage<128>(s0 + s * STAGE_BYTES, A, Bp, m0, M, K, kb, nt, KB, tid);
      cp_arrive(full0 + s * 8);
    }
    return;
  }
  const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
  float d[BN / 2];
  #pragma unroll
  for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
  for (int kb = 0; kb < KB; kb++) {
    const int s = kb % STAGES;
    mbar_wait(full0 + s * 8, (kb / STAGES) & 1);
    fence_async();
    const unsigned st = s0 + s * STAGE_BYTES;
    wg_fence();
    hold(d);
    #pragma unroll
    for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
    wg_commit();
#if MIDHOLD
    hold(d);
#endif
    wg_wait<1>();
    hold(d);
    if (kb > 0 && (t & 127) == 0) mbar_arrive(empty0 + ((kb - 1) % STAGES) * 8);
  }
  wg_wait<0>();
  hold(d);
  const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
  store_tile(d, bias, Y, M, N, row, n0, lane, act);
}
#endif
#if WS >= 2
#define CL WS

// Warp-specialized in clusters of CL along M: the CTAs of a cluster share their B tile, each copying its 1/CL of every
// stage's B image with one bulk copy multicast to all of them (complete_tx on each one's full barrier); A through cp.async
// as before. A stage is free when the consumers of every CTA of the cluster have released it (remote arrives).
extern "C" __global__ void __cluster_dims__(1, CL, 1) __launch_bounds__(384, 1) gemm_wsc(const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  const int nt = blockIdx.x, m0 = blockIdx.y * BM, n0 = nt * BN;
  const int KB = K / BK;
  const unsigned rank = cluster_rank();
  if (tid == 0) {
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 129); mbar_init(empty0 + s * 8, 2 * CL); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  cluster_sync();
  if (wg == 0) {
    for (int kb = 0; kb < KB; kb++) {
      const int s = kb % STAGES;
      const unsigned sb = s0 + s * STAGE_BYTES;
      if (kb >= STAGES) mbar_wait_cluster(empty0 + s * 8, ((kb / STAGES) & 1) ^ 1);
      if (tid == 0) {
        mbar_expect(full0 + s * 8, B_BYTES);
        bulk_mc(sb + A_BYTES + rank * (B_BYTES / CL), Bp + ((size_t)nt * KB + kb) * (BN * BK) + rank * (BN * BK / CL), B_BYTES / CL, full0 + s * 8, (unsigned short)((1 << CL) - 1));
      }
      #pragma unroll
      for (int it = 0; it < BM * BK / 8 / 128; it++) {
        const int i = it * 128 + tid;
        const int r = i & 7, c = (i >> 3) % (BK / 8), g = i / (8 * (BK / 8));
        const int grow = m0 + g * 8 + r;
        const __half* src = A + (size_t)(grow < M ? grow : M - 1) * K + kb * BK + c * 8;
        cp16(sb + place(g, c, r), src, grow < M ? 16 : 0);
      }
      cp_arrive(full0 + s * 8);
    }
  } else {
    const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
    float d[BN / 2];
    #pragma unroll
    for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
    for (int kb = 0; kb < KB; kb++) {
      const int s = kb % STAGES;
      mbar_wait(full0 + s * 8, (kb / STAGES) & 1);
      fence_async();
      const unsigned st = s0 + s * STAGE_BYTES;
      wg_fence();
      hold(d);
      #pragma unroll
      for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
      wg_commit();
      wg_wait<1>();
      hold(d);
      if (kb > 0 && (t & 127) == 0) {
        #pragma unroll
        for (int r = 0; r < CL; r++) mbar_arrive_cluster(empty0 + ((kb - 1) % STAGES) * 8, r);
      }
    }
    wg_wait<0>();
    hold(d);
    const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
    store_tile(d, bias, Y, M, N, row, n0, lane, act);
  }
  cluster_sync();
}
#endif
#endif
#if G2
// The plain kernel again, its epilogue through shared memory (EPI 1: each warp then stores whole 512-byte rows), or not
// stored at all (EPI 2: a store no value takes, so the work stays), persistent over tiles where PERSIST.
__device__ __forceinline__ void tile_g2(unsigned char* smem, unsigned s0, const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act, int nt, int m0)
{
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int n0 = nt * BN, KB = K / BK;
  float d[BN / 2];
  #pragma unroll
  for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
  #pragma unroll
  for (int s = 0; s < DIST; s++) { if (s < KB) load_stage<256>(s0 + s * STAGE_BYTES, A, Bp, m0, M, K, s, nt, KB, tid); cp_commit(); }
  for (int kb = 0; kb < KB; kb++) {
    cp_wait<DIST - 1>();
    fence_async();
    __syncthreads();
    const int nk = kb + DIST;
    if (nk < KB) load_stage<256>(s0 + (nk % STAGES) * STAGE_BYTES, A, Bp, m0, M, K, nk, nt, KB, tid);
    cp_commit();
    const unsigned st = s0 + (kb % STAGES) * STAGE_BYTES;
    wg_fence();
    hold(d);
    #pragma unroll
    for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + wg * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
    wg_commit();
    wg_wait<1>();
    hold(d);
  }
  wg_wait<0>();
  hold(d);
  const int lrow = wg * 64 + warp * 16 + (lane >> 2), row = m0 + lrow;
#if EPI == 1
  __syncthreads();  // every warpgroup's products done: the stages are free
  const int P = BN * 2 + 16;  // bytes of a staged row: 16 more than the row, conflict-free half2 writes
#endif
  #pragma unroll
  for (int j = 0; j < BN / 8; j++) {
    const int lc = j * 8 + (lane & 3) * 2, col = n0 + lc;
    const float b0 = __half2float(bias[col]), b1 = __half2float(bias[col + 1]);
    float v0 = d[4 * j] + b0, v1 = d[4 * j + 1] + b1, v2 = d[4 * j + 2] + b0, v3 = d[4 * j + 3] + b1;
    if (act) { v0 = gelu(v0); v1 = gelu(v1); v2 = gelu(v2); v3 = gelu(v3); }
#if EPI == 1
    *(__half2*)(smem + lrow * P + lc * 2) = __floats2half2_rn(v0, v1);
    *(__half2*)(smem + (lrow + 8) * P + lc * 2) = __floats2half2_rn(v2, v3);
#elif EPI == 2
    if (v0 == -12345.f) *(__half2*)(Y + (size_t)row * N + col) = __floats2half2_rn(v0, v1);
    if (v2 == -12345.f) *(__half2*)(Y + (size_t)(row + 8) * N + col) = __floats2half2_rn(v2, v3);
#else
    if (row < M) *(__half2*)(Y + (size_t)row * N + col) = __floats2half2_rn(v0, v1);
    if (row + 8 < M) *(__half2*)(Y + (size_t)(row + 8) * N + col) = __floats2half2_rn(v2, v3);
#endif
  }
#if EPI == 1
  __syncthreads();
  #pragma unroll 4
  for (int it = 0; it < BM * BN / 8 / 256; it++) {
    const int id = it * 256 + tid, r = id / (BN / 8), c = id % (BN / 8);
    const uint4 v = *(const uint4*)(smem + r * P + c * 16);
    if (m0 + r < M) *(uint4*)(Y + (size_t)(m0 + r) * N + n0 + c * 8) = v;
  }
  __syncthreads();  // the staged rows read before the next tile's copies land there
#endif
}

extern "C" __global__ void __launch_bounds__(256, 1) gemm2(const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const int NT = N / BN, tiles = NT * ((M + BM - 1) / BM);
#if PERSIST
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x)
#else
  const int tile = blockIdx.y * gridDim.x + blockIdx.x;
#endif
  tile_g2(smem, s0, A, Bp, bias, Y, M, N, K, act, tile % NT, (tile / NT) * BM);
}
#endif
#if G3
// Persistent, one pipeline across a block's tiles (the next tile's first stages copied during this one's last steps); a
// tile's sums + bias stored as fp16 when its last step is done, and its GELU applied in place to those values during the
// next tile's first steps, while that tile's products run on the tensor cores (each thread re-reads what it wrote).
__device__ __forceinline__ void gelu_chunk(__half* __restrict__ Y, int M, int N, int m0, int n0, int lrow, int lane, int j0, int j1)
{
  const int row = m0 + lrow;
  #pragma unroll 4
  for (int j = j0; j < j1; j++) {
    const int col = n0 + j * 8 + (lane & 3) * 2;
    if (row < M) { __half2* p = (__half2*)(Y + (size_t)row * N + col); const float2 v = __half22float2(*p); *p = __floats2half2_rn(gelu(v.x), gelu(v.y)); }
    if (row + 8 < M) { __half2* p = (__half2*)(Y + (size_t)(row + 8) * N + col); const float2 v = __half22float2(*p); *p = __floats2half2_rn(gelu(v.x), gelu(v.y)); }
  }
}

extern "C" __global__ void __launch_bounds__(256, 1) gemm3(const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int NT = N / BN, tiles = NT * ((M + BM - 1) / BM), KB = K / BK;
  const int T = blockIdx.x < tiles ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0, F = T * KB;
  const int JPI = (BN / 8 + KB - 1) / KB;
  const int lrow = wg * 64 + warp * 16 + (lane >> 2);
  float d[BN / 2];
  #pragma unroll
  for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
  #pragma unroll
  for (int f = 0; f < DIST; f++) {
    if (f < F) { const int t = blockIdx.x + (f / KB) * gridDim.x; load_stage<256>(s0 + f * STAGE_BYTES, A, Bp, (t / NT) * BM, M, K, f % KB, t % NT, KB, tid); }
    cp_commit();
  }
  int pm0 = -1, pn0 = 0;
  for (int f = 0; f < F; f++) {
    const int kb = f % KB, t = blockIdx.x + (f / KB) * gridDim.x, m0 = (t / NT) * BM, n0 = (t % NT) * BN;
    cp_wait<DIST - 1>();
    fence_async();
    __syncthreads();
    const int nf = f + DIST;
    if (nf < F) { const int tn = blockIdx.x + (nf / KB) * gridDim.x; load_stage<256>(s0 + (nf % STAGES) * STAGE_BYTES, A, Bp, (tn / NT) * BM, M, K, nf % KB, tn % NT, KB, tid); }
    cp_commit();
    const unsigned st = s0 + (f % STAGES) * STAGE_BYTES;
    wg_fence();
    hold(d);
    #pragma unroll
    for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + wg * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
    wg_commit();
    if (act && pm0 >= 0 && kb * JPI < BN / 8) gelu_chunk(Y, M, N, pm0, pn0, lrow, lane, kb * JPI, min(BN / 8, (kb + 1) * JPI));
    wg_wait<1>();
    hold(d);
    if (kb == KB - 1) {
      wg_wait<0>();
      hold(d);
      const int row = m0 + lrow;
      #pragma unroll
      for (int j = 0; j < BN / 8; j++) {
        const int col = n0 + j * 8 + (lane & 3) * 2;
        const float b0 = __half2float(bias[col]), b1 = __half2float(bias[col + 1]);
        if (row < M) *(__half2*)(Y + (size_t)row * N + col) = __floats2half2_rn(d[4 * j] + b0, d[4 * j + 1] + b1);
        if (row + 8 < M) *(__half2*)(Y + (size_t)(row + 8) * N + col) = __floats2half2_rn(d[4 * j + 2] + b0, d[4 * j + 3] + b1);
      }
      pm0 = m0; pn0 = n0;
    }
  }
  if (act && pm0 >= 0) gelu_chunk(Y, M, N, pm0, pn0, lrow, lane, 0, BN / 8);
}
#endif
#if G5
// Persistent and warp-specialized (session 53): a grid of one block an SM walks the tiles (tile = block + i * grid, N
// tile fastest); warpgroup 0 copies every k step of every tile into one ring of STAGES stages (cp.async, each thread's
// completion arriving on the stage's full barrier), never waiting for a tile's epilogue, so the next tile's first stages
// land while the consumers apply the bias and GELU to the last tile's sums; warpgroups 1 and 2 multiply (64 rows each),
// release each stage once the products that read it are done (the tile's last after the final wait), then store.
extern "C" __global__ void __launch_bounds__(384, 1) gemm5(const __half* __restrict__ A, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  const int KB = K / BK, NT = N / BN, tiles = NT * ((M + BM - 1) / BM);
  if (tid == 0) {
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 128); mbar_init(empty0 + s * 8, 2); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (wg == 0) {
    int it = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const int nt = tile % NT, m0 = (tile / NT) * BM;
      for (int kb = 0; kb < KB; kb++, it++) {
        const int s = it % STAGES;
        if (it >= STAGES) mbar_wait(empty0 + s * 8, ((it / STAGES) & 1) ^ 1);
        load_stage<128>(s0 + s * STAGE_BYTES, A, Bp, m0, M, K, kb, nt, KB, tid);
        cp_arrive(full0 + s * 8);
      }
    }
    return;
  }
  const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
  int it = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int nt = tile % NT, m0 = (tile / NT) * BM, n0 = nt * BN;
    float d[BN / 2];
    #pragma unroll
    for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
    for (int kb = 0; kb < KB; kb++, it++) {
      const int s = it % STAGES;
      mbar_wait(full0 + s * 8, (it / STAGES) & 1);
      fence_async();
      const unsigned st = s0 + s * STAGE_BYTES;
      wg_fence();
      hold(d);
      #pragma unroll
      for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
      wg_commit();
      wg_wait<1>();
      hold(d);
      if (kb > 0 && (t & 127) == 0) mbar_arrive(empty0 + ((it - 1) % STAGES) * 8);
    }
    wg_wait<0>();
    hold(d);
    if ((t & 127) == 0) mbar_arrive(empty0 + ((it - 1) % STAGES) * 8);
    const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
    store_any(d, bias, Y, M, N, row, n0, lane, act, cw * 4 + warp);
  }
}
#endif
#if G6
// gemm5's persistent ring with gemm4's copies: A's 128 x 64 box by one tensor copy (128-byte swizzle), B's packed image
// by one bulk copy, both issued by one producer thread and counted in bytes on the stage's full barrier.
extern "C" __global__ void __launch_bounds__(384, 1) gemm6(const void* __restrict__ tmapA, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  const int KB = K / BK, NT = N / BN, tiles = NT * ((M + BM - 1) / BM);
  if (tid == 0) {
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmapA) : "memory");
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 1); mbar_init(empty0 + s * 8, 2); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (wg == 0) {
    if (tid == 0) {
      int it = 0;
      for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int nt = tile % NT, m0 = (tile / NT) * BM;
        for (int kb = 0; kb < KB; kb++, it++) {
          const int s = it % STAGES;
          const unsigned sb = s0 + s * STAGE_BYTES, bar = full0 + s * 8;
          if (it >= STAGES) mbar_wait(empty0 + s * 8, ((it / STAGES) & 1) ^ 1);
          mbar_expect(bar, A_BYTES + B_BYTES);
          tma2d(sb, tmapA, kb * BK, m0, bar);
          bulk(sb + A_BYTES, Bp + ((size_t)nt * KB + kb) * (BN * BK), B_BYTES, bar);
        }
      }
    }
    return;
  }
  const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
  int it = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int nt = tile % NT, m0 = (tile / NT) * BM, n0 = nt * BN;
    float d[BN / 2];
    #pragma unroll
    for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
    for (int kb = 0; kb < KB; kb++, it++) {
      const int s = it % STAGES;
      mbar_wait(full0 + s * 8, (it / STAGES) & 1);
      const unsigned st = s0 + s * STAGE_BYTES;
      wg_fence();
      hold(d);
      #pragma unroll
      for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
      wg_commit();
      wg_wait<1>();
      hold(d);
      if (kb > 0 && (t & 127) == 0) mbar_arrive(empty0 + ((it - 1) % STAGES) * 8);
    }
    wg_wait<0>();
    hold(d);
    if ((t & 127) == 0) mbar_arrive(empty0 + ((it - 1) % STAGES) * 8);
    const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
    store_any(d, bias, Y, M, N, row, n0, lane, act, cw * 4 + warp);
  }
}
#endif
#if G7
// gemm6 in clusters of two along M: the two blocks of a cluster take the two M tiles of one pair (same N tile) at every
// step of the persistent walk; each copies its own A box and half of the shared B image, multicast to both, so a block
// reads 32 KB a step from L2 instead of 48; a stage is refilled once both blocks' consumers released it (4 arrivals).
extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(384, 1) gemm7(const void* __restrict__ tmapA, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  unsigned rank; asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  const int KB = K / BK, NT = N / BN, MP = ((M + BM - 1) / BM + 1) / 2, pairs = NT * MP;
  const int cid = blockIdx.x / 2, ncl = gridDim.x / 2;
  if (tid == 0) {
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmapA) : "memory");
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 1); mbar_init(empty0 + s * 8, 4); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  cluster_sync();
  if (wg == 0) {
    if (tid == 0) {
      int it = 0;
      for (int p = cid; p < pairs; p += ncl) {
        const int nt = p % NT, m0 = ((p / NT) * 2 + (int)rank) * BM;
        for (int kb = 0; kb < KB; kb++, it++) {
          const int s = it % STAGES;
          const unsigned sb = s0 + s * STAGE_BYTES, bar = full0 + s * 8;
          if (it >= STAGES) mbar_wait_cluster(empty0 + s * 8, ((it / STAGES) & 1) ^ 1);
          mbar_expect(bar, A_BYTES + B_BYTES);
          tma2d(sb, tmapA, kb * BK, m0, bar);
          bulk_mc(sb + A_BYTES + rank * (B_BYTES / 2), Bp + ((size_t)nt * KB + kb) * (BN * BK) + rank * (BN * BK / 2), B_BYTES / 2, bar, (unsigned short)3);
        }
      }
    }
  } else {
    const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
    int it = 0;
    for (int p = cid; p < pairs; p += ncl) {
      const int nt = p % NT, m0 = ((p / NT) * 2 + (int)rank) * BM, n0 = nt * BN;
      float d[BN / 2];
      #pragma unroll
      for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
      for (int kb = 0; kb < KB; kb++, it++) {
        const int s = it % STAGES;
        mbar_wait_cluster(full0 + s * 8, (it / STAGES) & 1);
        const unsigned st = s0 + s * STAGE_BYTES;
        wg_fence();
        hold(d);
        #pragma unroll
        for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
        wg_commit();
        wg_wait<1>();
        hold(d);
        if (kb > 0 && (t & 127) == 0) { mbar_arrive_cluster(empty0 + ((it - 1) % STAGES) * 8, 0); mbar_arrive_cluster(empty0 + ((it - 1) % STAGES) * 8, 1); }
      }
      wg_wait<0>();
      hold(d);
      if ((t & 127) == 0) { mbar_arrive_cluster(empty0 + ((it - 1) % STAGES) * 8, 0); mbar_arrive_cluster(empty0 + ((it - 1) % STAGES) * 8, 1); }
      const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
      store_tile(d, bias, Y, M, N, row, n0, lane, act);
    }
  }
  cluster_sync();  // neither block leaves while the other may still copy into it or arrive on its barriers
}
#endif
#if G8
// gemm7 with B by tensor copies too (a map over W^T [N, K], 128-byte swizzle: no packing), in clusters of CL8 along M;
// with CL8 = 2 each block copies half of B's 256 rows, multicast to both (the tensor form of the multicast).
extern "C" __global__ void __cluster_dims__(CL_, 1, 1) __launch_bounds__(384, 1) gemm8(const void* __restrict__ tmapA, const void* __restrict__ tmapB, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  unsigned rank = 0;
  if (CL_ > 1) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  const int KB = K / BK, NT = N / BN, MP = ((M + BM - 1) / BM + CL_ - 1) / CL_, groups = NT * MP;
  const int cid = blockIdx.x / CL_, ncl = gridDim.x / CL_;
  if (tid == 0) {
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmapA) : "memory");
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmapB) : "memory");
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 1); mbar_init(empty0 + s * 8, 2 * CL_); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  if (CL_ > 1) cluster_sync(); else __syncthreads();
  if (wg == 0) {
    if (tid == 0) {
      int it = 0;
      for (int p = cid; p < groups; p += ncl) {
        const int nt = p % NT, m0 = ((p / NT) * CL_ + (int)rank) * BM;
        for (int kb = 0; kb < KB; kb++, it++) {
          const int s = it % STAGES;
          const unsigned sb = s0 + s * STAGE_BYTES, bar = full0 + s * 8;
          if (it >= STAGES) mbar_wait(empty0 + s * 8, ((it / STAGES) & 1) ^ 1);
#if NOLOAD
          mbar_expect(bar, 0);  // the ring's hand-offs alone: each stage marked full without a copy (the products read stale data)
          (void)sb;
#else
          mbar_expect(bar, A_BYTES + B_BYTES);
          tma2d(sb, tmapA, kb * BK, m0, bar);
          if (CL_ == 1) { tma2d(sb + A_BYTES, tmapB, kb * BK, nt * BN, bar); tma2d(sb + A_BYTES + B_BYTES / 2, tmapB, kb * BK, nt * BN + BN / 2, bar); }
          else tma2d_mc(sb + A_BYTES + rank * (B_BYTES / 2), tmapB, kb * BK, nt * BN + (int)rank * (BN / 2), bar, (unsigned short)((1 << CL_) - 1));
#endif
        }
      }
    }
  } else {
    const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
    int it = 0;
    for (int p = cid; p < groups; p += ncl) {
      const int nt = p % NT, m0 = ((p / NT) * CL_ + (int)rank) * BM, n0 = nt * BN;
      float d[BN / 2];
      #pragma unroll
      for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
      for (int kb = 0; kb < KB; kb++, it++) {
        const int s = it % STAGES;
        mbar_wait(full0 + s * 8, (it / STAGES) & 1);
        const unsigned st = s0 + s * STAGE_BYTES;
        wg_fence();
        hold(d);
#if !NOMMA  // without: the copies alone, each stage released as soon as it is full
        #pragma unroll
        for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
#else
        (void)st;
#endif
        wg_commit();
        wg_wait<1>();
        hold(d);
        if (kb > 0 && (t & 127) == 0) { for (int r = 0; r < CL_; r++) mbar_arrive_remote(empty0 + ((it - 1) % STAGES) * 8, r); }
      }
      wg_wait<0>();
      hold(d);
      if ((t & 127) == 0) { for (int r = 0; r < CL_; r++) mbar_arrive_remote(empty0 + ((it - 1) % STAGES) * 8, r); }
      const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
      store_any(d, bias, Y, M, N, row, n0, lane, act, cw * 4 + warp);
    }
  }
  if (CL_ > 1) cluster_sync();
}
#endif
#if G9
// Ping-pong (after cutlass's sm90 ping-pong kernel; session 53, not yet run): the block's tiles are 64 x BN, consumer
// warpgroup 1 takes the block's even tiles and 2 its odd ones; one ring of stages (A's 64 x 64 box by a tensor copy,
// B's packed image by a bulk copy) filled in tile order. A warpgroup starts a tile's products only once the other has
// issued all of its last tile's (the order barriers), so the two alternate on the tensor cores and one's epilogue
// (bias, GELU, stores) runs under the other's products.
#define A9_BYTES (64 * BK * 2)
#define STAGE9_BYTES (A9_BYTES + B_BYTES)
extern "C" __global__ void __launch_bounds__(384, 1) gemm9(const void* __restrict__ tmapA, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE9_BYTES, empty0 = full0 + STAGES * 8, order0 = empty0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  const int KB = K / BK, NT = N / BN, tiles = NT * ((M + 63) / 64);
  if (tid == 0) {
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmapA) : "memory");
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 1); mbar_init(empty0 + s * 8, 1); }
    mbar_init(order0, 1);
    mbar_init(order0 + 8, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (wg == 0) {
    if (tid == 0) {
      int it = 0;
      for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int nt = tile % NT, m0 = (tile / NT) * 64;
        for (int kb = 0; kb < KB; kb++, it++) {
          const int s = it % STAGES;
          const unsigned sb = s0 + s * STAGE9_BYTES, bar = full0 + s * 8;
          if (it >= STAGES) mbar_wait(empty0 + s * 8, ((it / STAGES) & 1) ^ 1);
          mbar_expect(bar, A9_BYTES + B_BYTES);
          tma2d(sb, tmapA, kb * BK, m0, bar);
          bulk(sb + A9_BYTES, Bp + ((size_t)nt * KB + kb) * (BN * BK), B_BYTES, bar);
        }
      }
    }
    return;
  }
  const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
  int local = 0, waits = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, local++) {
    if ((local & 1) != cw) continue;
    const int nt = tile % NT, m0 = (tile / NT) * 64, n0 = nt * BN;
    // The other warpgroup's products of tile local - 1 all issued (its waits on the ring done) before this one's start.
    if (local > 0) { mbar_wait(order0 + cw * 8, waits & 1); waits++; }
    int it = local * KB;
    float d[BN / 2];
    #pragma unroll
    for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
    for (int kb = 0; kb < KB; kb++, it++) {
      const int s = it % STAGES;
      mbar_wait(full0 + s * 8, (it / STAGES) & 1);
      const unsigned st = s0 + s * STAGE9_BYTES;
      wg_fence();
      hold(d);
      #pragma unroll
      for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + ks * KSTEP), desc(st + A9_BYTES + ks * KSTEP), (kb | ks) != 0);
      wg_commit();
      wg_wait<1>();
      hold(d);
      if (kb > 0 && t % 128 == 0) mbar_arrive(empty0 + ((it - 1) % STAGES) * 8);
    }
    if (t % 128 == 0) mbar_arrive(order0 + (1 - cw) * 8);  // the other warpgroup may start its next tile's products
    wg_wait<0>();
    hold(d);
    if (t % 128 == 0) mbar_arrive(empty0 + ((it - 1) % STAGES) * 8);
    const int row = m0 + warp * 16 + (lane >> 2);
    store_any(d, bias, Y, M, N, row, n0, lane, act, cw * 4 + warp);
  }
}
#endif
#if G4
#ifndef CL
#define CL CL_
#endif
// TMA: A's 128 x 64 box by one tensor copy (cuTensorMapEncodeTiled, 128-byte swizzle: the layout the descriptors read),
// B's packed 32 KB image by one bulk copy (or, in clusters of CL along M, each CTA's 1/CL of it multicast to all), issued
// by one producer thread, completion counted in bytes on the stage's full barrier; two consumer warpgroups as before.

extern "C" __global__ void __cluster_dims__(1, CL, 1) __launch_bounds__(384, MINB) gemm4(const void* __restrict__ tmapA, const __half* __restrict__ Bp, const __half* __restrict__ bias, __half* __restrict__ Y, int M, int N, int K, int act)
{
  extern __shared__ __align__(1024) unsigned char smem[];
  const unsigned s0 = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned full0 = s0 + STAGES * STAGE_BYTES, empty0 = full0 + STAGES * 8;
  const int tid = threadIdx.x, wg = tid >> 7;
  const int nt = blockIdx.x, m0 = blockIdx.y * BM, n0 = nt * BN;
  const int KB = K / BK;
  const unsigned rank = CL > 1 ? cluster_rank() : 0;
  if (tid == 0) {
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmapA) : "memory");
    for (int s = 0; s < STAGES; s++) { mbar_init(full0 + s * 8, 1); mbar_init(empty0 + s * 8, 2 * CL); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  if (CL > 1) cluster_sync(); else __syncthreads();
  if (wg == 0) {
#if MINB > 1
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");  // two blocks an SM: the producer gives its registers to the consumers
#endif
    if (tid == 0) {
      for (int kb = 0; kb < KB; kb++) {
        const int s = kb % STAGES;
        const unsigned sb = s0 + s * STAGE_BYTES, bar = full0 + s * 8;
        if (kb >= STAGES) mbar_wait_cluster(empty0 + s * 8, ((kb / STAGES) & 1) ^ 1);
        mbar_expect(bar, A_BYTES + B_BYTES);
        tma2d(sb, tmapA, kb * BK, m0, bar);
        const __half* bsrc = Bp + ((size_t)nt * KB + kb) * (BN * BK);
        if (CL == 1) bulk(sb + A_BYTES, bsrc, B_BYTES, bar);
        else bulk_mc(sb + A_BYTES + rank * (B_BYTES / CL), bsrc + rank * (BN * BK / CL), B_BYTES / CL, bar, (unsigned short)((1 << CL) - 1));
      }
    }
  } else {
#if MINB > 1
    asm volatile("setmaxnreg.inc.sync.aligned.u32 104;");
#endif
    const int cw = wg - 1, t = tid - 128, warp = (t >> 5) & 3, lane = t & 31;
    float d[BN / 2];
    #pragma unroll
    for (int i = 0; i < BN / 2; i++) d[i] = 0.f;
    for (int kb = 0; kb < KB; kb++) {
      const int s = kb % STAGES;
      mbar_wait_cluster(full0 + s * 8, (kb / STAGES) & 1);
      const unsigned st = s0 + s * STAGE_BYTES;
      wg_fence();
      hold(d);
      #pragma unroll
      for (int ks = 0; ks < BK / 16; ks++) mma(d, desc(st + cw * 8 * SBO + ks * KSTEP), desc(st + A_BYTES + ks * KSTEP), (kb | ks) != 0);
      wg_commit();
      wg_wait<1>();
      hold(d);
      if (kb > 0 && (t & 127) == 0) {
        #pragma unroll
        for (int r = 0; r < CL; r++) mbar_arrive_cluster(empty0 + ((kb - 1) % STAGES) * 8, r);
      }
    }
    wg_wait<0>();
    hold(d);
    const int row = m0 + cw * 64 + warp * 16 + (lane >> 2);
    store_tile(d, bias, Y, M, N, row, n0, lane, act);
  }
  if (CL > 1) cluster_sync();
}
#endif
"""


def source(bn, bk, stages, minb, swz=0, noload=0, nomma=0, ws=0, midhold=0, g2=0, epi=0, persist=0, gas=0):
    g3 = 1 if g2 == 3 else 0
    g4 = 1 if g2 == 4 else 0
    g5 = 1 if g2 == 5 else 0
    g6 = 1 if g2 == 6 else 0
    g7 = 1 if g2 == 7 else 0
    g8 = 1 if g2 == 8 else 0
    g9 = 1 if g2 == 9 else 0
    cl = max(ws, 1) if g2 in (4, 8) else 1
    ws = 0 if g2 in (4, 8) else ws
    g2 = 0 if g2 in (3, 4, 5, 6, 7, 8, 9) else g2
    n = bn // 2
    text = SRC.replace("__ERF_AS__", ERF_AS.strip("\n")).replace("__BN__", str(bn)).replace("__DLIST__", ", ".join(f"%{i}" for i in range(n)))
    text = text.replace("__DOUT__", ", ".join(f'"+f"(d[{i}])' for i in range(n)))
    text = text.replace("__A__", str(n)).replace("__B__", str(n + 1)).replace("__P__", str(n + 2))
    return f"#define BN {bn}\n#define BK {bk}\n#define STAGES {stages}\n#define MINB {minb}\n#define SWZ {swz}\n#define NOLOAD {noload}\n#define NOMMA {nomma}\n#define WS {ws}\n#define MIDHOLD {midhold}\n#define G2 {g2}\n#define EPI {epi}\n#define PERSIST {persist}\n#define G3 {g3}\n#define G4 {g4}\n#define G5 {g5}\n#define G6 {g6}\n#define G7 {g7}\n#define G8 {g8}\n#define G9 {g9}\n#define CL_ {cl}\n#define GELU_AS {gas}\n" + text


def pack_b(w, bn, bk, swz=0):
    """W [K, N] -> the per-(n tile, k block) shared-memory images, flat (128-byte swizzle: rows of 64, chunk c of row r at c ^ r)."""
    k, n = w.shape
    wt = w.t().contiguous()  # [N, K]
    if not swz:
        return wt.reshape(n // bn, bn // 8, 8, k // bk, bk // 8, 8).permute(0, 3, 1, 4, 2, 5).contiguous().reshape(-1)
    t = wt.reshape(n // bn, bn // 8, 8, k // 64, 8, 8).permute(0, 3, 1, 2, 4, 5).contiguous()  # nt, kb, g, r, c, e
    r = torch.arange(8, device=w.device)
    idx = (torch.arange(8, device=w.device)[None, :] ^ r[:, None])  # [r, c'] -> c
    idx = idx.view(1, 1, 1, 8, 8, 1).expand_as(t)
    return torch.gather(t, 4, idx).reshape(-1)


def tensor_map_a(a, m, k, rows=128):
    """A's TMA descriptor (cuTensorMapEncodeTiled: fp16 [M, K] row-major, a `rows` x 64 box, 128-byte swizzle, rows past
    M read as zeros), its 128 bytes copied to device memory (the kernel reads it through a pointer)."""
    import ctypes

    import numpy as np
    from cuda.bindings import driver as cu

    err, tmap = cu.cuTensorMapEncodeTiled(
        cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, a.data_ptr(), [cu.cuuint64_t(k), cu.cuuint64_t(m)], [cu.cuuint64_t(k * 2)], [cu.cuuint32_t(64), cu.cuuint32_t(rows)], [cu.cuuint32_t(1), cu.cuuint32_t(1)],
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B, cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuTensorMapEncodeTiled: {err}")
    raw = ctypes.string_at(tmap.getPtr(), 128)
    return cp.asarray(np.frombuffer(raw, dtype=np.uint8).copy())


def median_us(fn, reps=30, inner=10):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1000 / inner)
    return statistics.median(times)


def ptxas_log(src):
    """NVRTC's log with ptxas's verbose report and warnings (wgmma serialization shows there)."""
    from cuda.bindings import nvrtc
    err, prog = nvrtc.nvrtcCreateProgram(src.encode(), b"probe.cu", 0, [], [])
    import glob
    import os
    incs = [os.path.dirname(p) for p in glob.glob("/usr/local/cuda*/include/cuda_fp16.h") + glob.glob("/usr/local/lib/python3*/*-packages/nvidia/*/include/cuda_fp16.h") + glob.glob("/usr/lib/python3*/*-packages/nvidia/*/include/cuda_fp16.h") + glob.glob(os.path.join(os.path.dirname(cp.__file__), "..", "nvidia", "*", "include", "cuda_fp16.h"))]
    opts = [b"-std=c++17", b"-arch=sm_90a", b"--ptxas-options=-v", b"--ptxas-options=--warn-on-spills"] + [("-I" + i).encode() for i in incs[:1]]
    res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return f"nvrtc {res[0]}: " + buf.decode(errors="replace")[:3000]


def triton_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def mm_gelu(a_ptr, b_ptr, bias_ptr, c_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
        pid = tl.program_id(0)
        num_pid_m = tl.cdiv(M, BM)
        num_pid_n = tl.cdiv(N, BN)
        num_pid_in_group = GROUP_M * num_pid_n
        group_id = pid // num_pid_in_group
        first_pid_m = group_id * GROUP_M
        group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
        pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
        pid_n = (pid % num_pid_in_group) // group_size_m
        offs_am = (pid_m * BM + tl.arange(0, BM)) % M
        offs_bn = (pid_n * BN + tl.arange(0, BN)) % N
        offs_k = tl.arange(0, BK)
        a_ptrs = a_ptr + offs_am[:, None] * K + offs_k[None, :]
        b_ptrs = b_ptr + offs_k[:, None] * N + offs_bn[None, :]
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for _ in range(0, K // BK):
            acc = tl.dot(tl.load(a_ptrs), tl.load(b_ptrs), acc)
            a_ptrs += BK
            b_ptrs += BK * N
        x = acc + tl.load(bias_ptr + offs_bn).to(tl.float32)[None, :]
        y = 0.5 * x * (1 + tl.math.erf(x * 0.7071067811865476))
        offs_cm = pid_m * BM + tl.arange(0, BM)
        offs_cn = pid_n * BN + tl.arange(0, BN)
        tl.store(c_ptr + offs_cm[:, None] * N + offs_cn[None, :], y.to(tl.float16), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))

    return mm_gelu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--configs", default="256,64,4,1;256,32,8,1;256,32,6,1;128,64,4,1;128,32,6,2;128,64,3,2")
    ap.add_argument("--shapes", default="8192,3072,768;12608,3072,768;12608,1536,384;128,3072,768")
    ap.add_argument("--ptxas", type=int, default=1)
    ap.add_argument("--triton", default="128,256,64,3,8;128,128,64,4,4;128,128,64,4,8")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = []
    log = open(args.out + ".txt", "w")

    def say(line):
        print(line)
        log.write(line + "\n")
        log.flush()

    say(f"device {torch.cuda.get_device_name()}  torch {torch.__version__}  cupy {cp.__version__}")
    modules = {}
    for cfg in args.configs.split(";"):
        f = list(map(int, cfg.split(","))) + [0] * 14
        bn, bk, stages, minb, swz, noload, nomma, act0, ws, midhold, g2, epi, persist, gas = f[:14]
        act = 1 - act0  # the 8th field 1: no GELU
        try:
            src = source(bn, bk, stages, minb, swz, noload, nomma, ws, midhold, g2, epi, persist, gas)
            k = cp.RawKernel(src, "gemm9" if g2 == 9 else "gemm8" if g2 == 8 else "gemm7" if g2 == 7 else "gemm6" if g2 == 6 else "gemm5" if g2 == 5 else "gemm4" if g2 == 4 else "gemm3" if g2 == 3 else "gemm2" if g2 else "gemm_wsc" if ws >= 2 else "gemm_ws" if ws else "gemm_bias_gelu", options=("-std=c++17", "-arch=sm_90a"))
            smem = stages * (64 + bn) * bk * 2 + 16 * stages + 16 if g2 == 9 else stages * (128 + bn) * bk * 2 + (16 * stages if ws or g2 in (4, 5, 6, 7, 8) else 0)
            smem += 8 * 16 * 144 if epi == 3 else 0  # EPI 3: the consumer warps' staging buffers, at the end
            k.max_dynamic_shared_size_bytes = smem
            k.compile()
            modules[cfg] = (k, bn, bk, smem, swz, act, 384 if ws or g2 in (4, 5, 6, 7, 8, 9) else 256, persist, 3 if g2 == 9 else 2 if g2 == 8 else int(g2 in (4, 6, 7)))
            say(f"built {cfg}: smem {smem}, regs {k.attributes['num_regs']}, local {k.attributes['local_size_bytes']}")
        except Exception as e:  # noqa: BLE001
            say(f"build {cfg} failed: {str(e)[:2000]}")
            continue
        if args.ptxas and (cfg == args.configs.split(";")[0] or (args.ptxas > 1 and swz and not (noload or nomma or act0))):
            try:
                say(ptxas_log(src))
            except Exception as e:  # noqa: BLE001
                say(f"no ptxas log: {e}")
    tri = None
    try:
        tri = triton_kernel() if args.triton else None
    except Exception as e:  # noqa: BLE001
        say(f"triton unavailable: {e}")

    for shape in args.shapes.split(";"):
        m, n, k = map(int, shape.split(","))
        flop = 2.0 * m * n * k
        a = torch.randn(m, k, device="cuda", dtype=torch.float16)
        w = (torch.randn(k, n, device="cuda", dtype=torch.float16) / math.sqrt(k)).contiguous()
        bias = torch.randn(n, device="cuda", dtype=torch.float16) * 0.5
        ref = F.gelu(a.float() @ w.float() + bias.float())
        row = {"m": m, "n": n, "k": k}
        y = torch.empty(m, n, device="cuda", dtype=torch.float16)
        us = median_us(lambda: torch.addmm(bias, a, w, out=y))
        row["cublaslt_bias_us"] = us
        us2 = median_us(lambda: F.gelu(y))
        row["gelu_pass_us"] = us2
        us3 = median_us(lambda: torch._addmm_activation(bias, a, w, use_gelu=True))
        row["cublaslt_tanh_epilogue_us"] = us3
        plan = F.gelu(torch.addmm(bias, a, w))
        row["plan_err"] = (plan.float() - ref).abs().max().item()
        say(f"{m}x{n}x{k}: cuBLASLt+bias {us:.1f} us ({flop / us / 1e6:.0f} TFLOP/s) + GELU pass {us2:.1f} = {us + us2:.1f}; tanh epilogue {us3:.1f}; plan err {row['plan_err']:.2e}")
        for cfg, (kern, bn, bk, smem, swz, act, threads, persist, tma) in modules.items():
            if n % bn or k % bk:
                continue
            bp = pack_b(w, bn, bk, swz)
            out = torch.empty(m, n, device="cuda", dtype=torch.float16)
            cl = ws if ws >= 2 else 1
            grid = (n // bn, ((m + 127) // 128 + cl - 1) // cl * cl)
            if persist:
                grid = (min(persist, (n // bn) * ((m + 127) // 128)), 1)
            first = a.data_ptr()
            if tma:
                try:
                    tmap = tensor_map_a(a, m, k, 64 if tma == 3 else 128)  # gemm9: 64-row tiles
                except Exception as e:  # noqa: BLE001
                    say(f"  own {cfg}: no tensor map: {str(e)[:300]}")
                    continue
                first = tmap.data.ptr
                if tma == 2:  # gemm8: B by a tensor map over W^T [N, K] (same box and swizzle as A's)
                    wt_keep = w.t().contiguous()  # the map points into it: keep it alive
                    tmapb = tensor_map_a(wt_keep, n, k)
                    bp = tmapb
            args_ = (cp.uint64(first), cp.uint64(bp.data.ptr if tma == 2 else bp.data_ptr()), cp.uint64(bias.data_ptr()), cp.uint64(out.data_ptr()), cp.int32(m), cp.int32(n), cp.int32(k), cp.int32(act))

            def launch(kern=kern, grid=grid, args_=args_, smem=smem, threads=threads):
                kern(grid, (threads,), args_, shared_mem=smem)

            try:
                launch()
                torch.cuda.synchronize()
                out.zero_()
                launch()
                torch.cuda.synchronize()
                err = (out.float() - (ref if act else (a.float() @ w.float() + bias.float()))).abs().max().item()
                us4 = median_us(launch)
                row[f"own_{cfg}_us"] = us4
                row[f"own_{cfg}_err"] = err
                say(f"  own {cfg}: {us4:.1f} us ({flop / us4 / 1e6:.0f} TFLOP/s), err {err:.2e}, vs plan {(us + us2) / us4:.2f}x")
            except Exception as e:  # noqa: BLE001
                say(f"  own {cfg} failed: {str(e)[:500]}")
        if tri is not None and args.triton:
            for tc in args.triton.split(";"):
                bm, bn, bk, st, nw = map(int, tc.split(","))
                out = torch.empty(m, n, device="cuda", dtype=torch.float16)
                grid = (((m + bm - 1) // bm) * (n // bn),)
                try:
                    def tlaunch(out=out, grid=grid, bm=bm, bn=bn, bk=bk, st=st, nw=nw):
                        tri[grid](a, w, bias, out, m, n, k, BM=bm, BN=bn, BK=bk, GROUP_M=8, num_stages=st, num_warps=nw)
                    tlaunch()
                    torch.cuda.synchronize()
                    err = (out.float() - ref).abs().max().item()
                    us5 = median_us(tlaunch)
                    row[f"triton_{tc}_us"] = us5
                    say(f"  triton {tc}: {us5:.1f} us ({flop / us5 / 1e6:.0f} TFLOP/s), err {err:.2e}, vs plan {(us + us2) / us5:.2f}x")
                except Exception as e:  # noqa: BLE001
                    say(f"  triton {tc} failed: {str(e)[:300]}")
        results.append(row)
    json.dump(results, open(args.out + ".json", "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
