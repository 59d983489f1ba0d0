typedef long long i64;
typedef unsigned long long u64;
struct __align__(2) bw_half {
    unsigned short bits;
    __device__ __forceinline__ bw_half() {}
    __device__ __forceinline__ bw_half(float f) { asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(f)); }
    __device__ __forceinline__ bw_half(double f) : bw_half((float)f) {}
    __device__ __forceinline__ bw_half(int v) : bw_half((float)v) {}
    __device__ __forceinline__ operator float() const { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits)); return f; }
};
struct __align__(2) bw_bf16 {
    unsigned short bits;
    __device__ __forceinline__ bw_bf16() {}
    __device__ __forceinline__ bw_bf16(float f) {
        unsigned u = __float_as_uint(f);
        bits = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u) : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    __device__ __forceinline__ bw_bf16(double f) : bw_bf16((float)f) {}
    __device__ __forceinline__ bw_bf16(int v) : bw_bf16((float)v) {}
    __device__ __forceinline__ operator float() const { return __uint_as_float((unsigned)bits << 16); }
};
extern "C" __global__ void bw_gate(volatile int* open)
{
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (*open == 0 && now - start < 500000000ull);
}
// Programmatic dependent launch (sm_90): every generated kernel begins here. Launched with the attribute
// (BATCHWISE_PDL=on), it waits for the kernel before it on the stream to finish and its writes to be visible, then
// lets the kernel after it be scheduled (that one waits here in turn); launched without, both are no-ops.
__device__ __forceinline__ void bw_pdl_enter()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
struct bw_div { unsigned d, m, s; };
__device__ __forceinline__ unsigned bw_q(const bw_div v, unsigned n) { return (__umulhi(n, v.m) + n) >> v.s; }
__device__ __forceinline__ float bw_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ double bw_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
__device__ __forceinline__ float bw_softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }
__device__ __forceinline__ float bw_gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float bw_gelu_tanh(float x) { return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
__device__ __forceinline__ float bw_warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
__device__ __forceinline__ float bw_warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
__device__ __forceinline__ float bw_block_sum(float v, float* shared) {
    v = bw_warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (int)(threadIdx.x & 31) < (int)(blockDim.x >> 5) ? shared[threadIdx.x & 31] : 0.f;
    return bw_warp_sum(v);
}
#ifndef BW_QDIV
#define BW_QDIV
__device__ __forceinline__ float bw_qdiv(float x, float s, float inv) { const float q = x * inv; return fmaf(fmaf(-q, s, x), inv, q); }
// Round half to even for |x| <= 2^22 (a clamped quantized value): the sum's last place is the units.
__device__ __forceinline__ float bw_rint(float x) { return (x + 12582912.f) - 12582912.f; }
#endif
__device__ __forceinline__ float bw_quantize(float x, float s, float inv, float lo, float hi) {
    const float q = x * inv;
    return bw_rint(fminf(fmaxf(fabsf(q) <= 3.402823466e38f ? bw_qdiv(x, s, inv) : q, lo), hi));
}
#ifndef BW_ATTENTION_HELPERS
#define BW_ATTENTION_HELPERS
__device__ __forceinline__ void bw_mma_16816(float* c, const unsigned* a, unsigned b0, unsigned b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ unsigned bw_pack_half2(float lo, float hi)
{
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ void bw_ldsm_x4(unsigned* r, const unsigned short* row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((unsigned)__cvta_generic_to_shared(row)) : "memory");
}
__device__ __forceinline__ void bw_ldsm_x4_trans(unsigned* r, const unsigned short* row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((unsigned)__cvta_generic_to_shared(row)) : "memory");
}
__device__ __forceinline__ void bw_cp_async16(unsigned short* dst, const unsigned short* src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
        :: "r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void bw_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void bw_cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
__device__ __forceinline__ float bw_exp2(float x) { float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
#endif
#ifndef BW_WGMMA_HELPERS
#define BW_WGMMA_HELPERS
__device__ __forceinline__ void bw_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void bw_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void bw_wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
__device__ __forceinline__ void bw_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ unsigned long long bw_wgmma_desc(const void* smem, unsigned lbo, unsigned sbo)
{
    const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    return (unsigned long long)((a & 0x3FFFFu) >> 4) | ((unsigned long long)((lbo & 0x3FFFFu) >> 4) << 16) | ((unsigned long long)((sbo & 0x3FFFFu) >> 4) << 32);
}
__device__ __forceinline__ void bw_wgmma_64n128k32_s8(int (*c)[4], const unsigned* a, unsigned long long desc, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
        : "+r"(c[0][0]), "+r"(c[0][1]), "+r"(c[0][2]), "+r"(c[0][3]), "+r"(c[1][0]), "+r"(c[1][1]), "+r"(c[1][2]), "+r"(c[1][3]), "+r"(c[2][0]), "+r"(c[2][1]), "+r"(c[2][2]), "+r"(c[2][3]), "+r"(c[3][0]), "+r"(c[3][1]), "+r"(c[3][2]), "+r"(c[3][3]), "+r"(c[4][0]), "+r"(c[4][1]), "+r"(c[4][2]), "+r"(c[4][3]), "+r"(c[5][0]), "+r"(c[5][1]), "+r"(c[5][2]), "+r"(c[5][3]), "+r"(c[6][0]), "+r"(c[6][1]), "+r"(c[6][2]), "+r"(c[6][3]), "+r"(c[7][0]), "+r"(c[7][1]), "+r"(c[7][2]), "+r"(c[7][3]), "+r"(c[8][0]), "+r"(c[8][1]), "+r"(c[8][2]), "+r"(c[8][3]), "+r"(c[9][0]), "+r"(c[9][1]), "+r"(c[9][2]), "+r"(c[9][3]), "+r"(c[10][0]), "+r"(c[10][1]), "+r"(c[10][2]), "+r"(c[10][3]), "+r"(c[11][0]), "+r"(c[11][1]), "+r"(c[11][2]), "+r"(c[11][3]), "+r"(c[12][0]), "+r"(c[12][1]), "+r"(c[12][2]), "+r"(c[12][3]), "+r"(c[13][0]), "+r"(c[13][1]), "+r"(c[13][2]), "+r"(c[13][3]), "+r"(c[14][0]), "+r"(c[14][1]), "+r"(c[14][2]), "+r"(c[14][3]), "+r"(c[15][0]), "+r"(c[15][1]), "+r"(c[15][2]), "+r"(c[15][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate));
}
template <int KS> __device__ __forceinline__ void bw_wgmma_hold(int (*c)[4], unsigned (*a)[4])
{
    #pragma unroll
    for (int j = 0; j < 16; j++) {
        #pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(c[j][e]) :: "memory");
    }
    #pragma unroll
    for (int k = 0; k < KS; k++) {
        #pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[k][e]) :: "memory");
    }
}
#endif
#ifndef BW_WGMMA_F16_HELPERS
#define BW_WGMMA_F16_HELPERS
__device__ __forceinline__ unsigned long long bw_wgmma_desc_sw128(const void* smem)
{
    const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    return (unsigned long long)((a & 0x3FFFFu) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void bw_wgmma_64n256k16_f16(float* d, unsigned long long da, unsigned long long db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void bw_wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
__device__ __forceinline__ void bw_hold_f32x128(float* d)
{
    #pragma unroll
    for (int i = 0; i < 128; i++) asm volatile("" : "+f"(d[i]) :: "memory");
}
#endif
#ifndef BW_MBARRIER_HELPERS
#define BW_MBARRIER_HELPERS
__device__ __forceinline__ unsigned bw_smem_address(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void bw_mbar_init(unsigned long long* b, unsigned count) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bw_smem_address(b)), "r"(count) : "memory"); }
__device__ __forceinline__ void bw_mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
__device__ __forceinline__ void bw_mbar_arrive(unsigned long long* b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bw_smem_address(b)) : "memory"); }
__device__ __forceinline__ void bw_mbar_wait(unsigned long long* b, unsigned parity)
{
    asm volatile("{\n.reg .pred P;\nBW_MBAR_WAIT:\nmbarrier.try_wait.parity.shared::cta.b64 P, [%0], %1;\n@!P bra BW_MBAR_WAIT;\n}\n" :: "r"(bw_smem_address(b)), "r"(parity) : "memory");
}
#endif
#ifndef BW_TMA_HELPERS
#define BW_TMA_HELPERS
struct __align__(64) bw_tensor_map { unsigned long long opaque[16]; }; // CUtensorMap, encoded by the host per context
__device__ __forceinline__ void bw_tma_prefetch(const bw_tensor_map* m) { asm volatile("prefetch.tensormap [%0];" :: "l"(m) : "memory"); }
__device__ __forceinline__ void bw_mbar_expect_tx(unsigned long long* b, unsigned bytes) { asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bw_smem_address(b)), "r"(bytes) : "memory"); }
__device__ __forceinline__ void bw_tma_load_2d(void* dst, const bw_tensor_map* m, int column, int row, unsigned long long* b)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
        :: "r"(bw_smem_address(dst)), "l"(m), "r"(column), "r"(row), "r"(bw_smem_address(b)) : "memory");
}
#endif
#ifndef BW_RCP_APPROX
#define BW_RCP_APPROX
__device__ __forceinline__ float bw_rcp(float x) { float y; asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
#endif
#ifndef BW_GELU_AS
#define BW_GELU_AS
__device__ __forceinline__ float bw_gelu_as(float x)
{
    const float z = fabsf(x) * 0.70710678118654752f;
    const float t = bw_rcp(fmaf(0.3275911f, z, 1.f));
    float p = fmaf(0.5307027145f, t, -0.7265760135f); // A&S's a5..a1, halved: p t e = 0.5 erfc(z)
    p = fmaf(p, t, 0.7107068705f);
    p = fmaf(p, t, -0.142248368f);
    p = fmaf(p, t, 0.127414796f);
    const float q = p * t * bw_exp2(-z * z * 1.4426950408889634f);
    return x * (x >= 0.f ? 1.f - q : q);
}
#endif
struct __align__(8) half_gemm_args {
    int m;
    int n;
    int k;
    int column_tiles;
};
extern "C" __global__ void __launch_bounds__(384, 1) half_gemm(bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const bw_half* __restrict__ bias, const __grid_constant__ bw_tensor_map map_x, const __grid_constant__ bw_tensor_map map_w, const half_gemm_args a)
{
    bw_pdl_enter();
    extern __shared__ __align__(1024) unsigned short bw_dynamic_shared_sw128[]; // its own name: other kernels of the program declare theirs 16-byte aligned
    unsigned char* const sm_ = (unsigned char*)bw_dynamic_shared_sw128;
    unsigned long long* const full = (unsigned long long*)(sm_ + 147456);
    unsigned long long* const empty = full + 3;
    const int tid = (int)threadIdx.x, wg = tid >> 7;
    const int M = a.m, N = a.n, K = a.k, KB = K / 64, NT = a.column_tiles, tiles = NT * ((M + 127) / 128);
    unsigned long long* const staged = empty + 3; // [0]: the staged tile written (every consumer thread), [1]: read (every epilogue thread)
    unsigned char* const sb = sm_ + 147520;
    if (tid == 0) {
        bw_tma_prefetch(&map_x);
        bw_tma_prefetch(&map_w);
        for (int s = 0; s < 3; s++) { bw_mbar_init(full + s, 1); bw_mbar_init(empty + s, 2); } bw_mbar_init(staged, 256); bw_mbar_init(staged + 1, 96);
        bw_mbar_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        if (tid == 0) {
            // The producer (one thread): k step kb of a tile into stage (its running count) % 3 once the consumers released it.
            int it = 0;
            for (int tile = (int)blockIdx.x; tile < tiles; tile += (int)gridDim.x) {
                const int m0 = (tile / NT) * 128, n0 = (tile % NT) * 256;
                for (int kb = 0; kb < KB; kb++, it++) {
                    const int s = it % 3;
                    if (it >= 3) bw_mbar_wait(empty + s, ((it / 3) & 1) ^ 1);
                    unsigned char* const st = sm_ + s * 49152;
                    bw_mbar_expect_tx(full + s, 49152);
                    bw_tma_load_2d(st, &map_x, kb * 64, m0, full + s);
                    bw_tma_load_2d(st + 16384, &map_w, kb * 64, n0, full + s);
                    bw_tma_load_2d(st + 32768, &map_w, kb * 64, n0 + 128, full + s);
                }
            }
        } else if (tid >= 32) {
            // The epilogue (warps 1 to 3): each staged tile's rows ew, ew + 3, ...: 8 halves a lane, the GELU, 16-byte stores of Y.
            const int ew = (tid >> 5) - 1, lane = tid & 31;
            int i = 0;
            for (int tile = (int)blockIdx.x; tile < tiles; tile += (int)gridDim.x, i++) {
                const int m0 = (tile / NT) * 128, n0 = (tile % NT) * 256;
                bw_mbar_wait(staged, i & 1);
                for (int r = ew; r < 128 && m0 + r < M; r += 3) {
                    const uint4 v = *(const uint4*)(sb + r * 528 + lane * 16);
                    const bw_half* const h = (const bw_half*)&v;
                    uint4 o;
                    o.x = bw_pack_half2(bw_gelu_as((float)h[0]), bw_gelu_as((float)h[1]));
                    o.y = bw_pack_half2(bw_gelu_as((float)h[2]), bw_gelu_as((float)h[3]));
                    o.z = bw_pack_half2(bw_gelu_as((float)h[4]), bw_gelu_as((float)h[5]));
                    o.w = bw_pack_half2(bw_gelu_as((float)h[6]), bw_gelu_as((float)h[7]));
                    *(uint4*)(y + (size_t)(m0 + r) * N + n0 + lane * 8) = o;
                }
                bw_mbar_arrive(staged + 1);
            }
        }
        return;
    }

    // The consumers: warpgroup cw's 64 rows of each tile.
    const int cw = wg - 1, u = tid & 127, warp = u >> 5, lane = u & 31, g = lane >> 2;
    int it = 0, i = 0;
    for (int tile = (int)blockIdx.x; tile < tiles; tile += (int)gridDim.x, i++) {
        const int n0 = (tile % NT) * 256;
        float d[128];
        #pragma unroll
        for (int q = 0; q < 128; q++) d[q] = 0.f;
        for (int kb = 0; kb < KB; kb++, it++) {
            const int s = it % 3;
            bw_mbar_wait(full + s, (it / 3) & 1);
            bw_fence_proxy_async();
            unsigned char* const st = sm_ + s * 49152;
            bw_wgmma_fence();
            bw_hold_f32x128(d);
            #pragma unroll
            for (int ks = 0; ks < 4; ks++)
                bw_wgmma_64n256k16_f16(d, bw_wgmma_desc_sw128(st + cw * 8192 + ks * 32), bw_wgmma_desc_sw128(st + 16384 + ks * 32), (kb | ks) != 0);
            bw_wgmma_commit();
            bw_wgmma_wait1();
            bw_hold_f32x128(d);
            // The products of the step before are done: its stage may be refilled.
            if (kb > 0 && u == 0) bw_mbar_arrive(empty + (it - 1) % 3);
        }
        bw_wgmma_wait0();
        bw_hold_f32x128(d);
        if (u == 0) bw_mbar_arrive(empty + (it - 1) % 3);

        // The sums + bias as halves into the staged tile (this thread's rows g and g + 8 of its warp's 16, columns
        // 2t and 2t + 1 of each n8 tile), once the epilogue has read the tile before.
        if (i > 0) bw_mbar_wait(staged + 1, (i - 1) & 1);
        unsigned char* const ra = sb + (cw * 64 + warp * 16 + g) * 528;
        #pragma unroll
        for (int j = 0; j < 32; j++) {
            const int cl = j * 8 + (lane & 3) * 2;
            const float b0 = (float)bias[n0 + cl], b1 = (float)bias[n0 + cl + 1];
            *(unsigned*)(ra + cl * 2) = bw_pack_half2(d[4 * j] + b0, d[4 * j + 1] + b1);
            *(unsigned*)(ra + 8 * 528 + cl * 2) = bw_pack_half2(d[4 * j + 2] + b0, d[4 * j + 3] + b1);
        }
        bw_mbar_arrive(staged);
    }
}
