namespace Batchwise.Cuda.Kernels;

/// <summary>Fused scaled-dot-product attention on tensor cores (half precision, float accumulation).</summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="Attention"/>: four warps of 16 query rows each.</summary>
    public const int AttentionBlock = 128;

    /// <summary>Query rows per block of <see cref="Attention"/>.</summary>
    public const int AttentionRows = 64;

    /// <summary>The widest head (query/key and value width) <see cref="Attention"/> takes.</summary>
    public const int AttentionMaxHead = 128;

    /// <summary>
    /// The warp-level pieces the attention kernel is built from: one m16n8k16 tensor-core product (half inputs, float
    /// accumulators; sm_80 and later) and the packing of two floats into a half pair. Guarded, so a program with several
    /// attention kernels defines them once; the CPU test runner defines its own emulation first.
    /// </summary>
    private const string AttentionHelpers = """
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
        #endif

        """;

    /// <summary>
    /// O = softmax(scale * Q K^T + mask) V for every (batch, head), without writing the scores: one block per 64 query
    /// rows of one (batch, head), each warp 16 rows; keys and values stream through shared memory 64 at a time, the
    /// softmax is online (running maximum and sum per row, flash-attention style), the products run on tensor cores
    /// (mma.sync m16n8k16, half inputs, float accumulation). Q is [.., Sq, D], K is read as (key, d) through its strides
    /// (a [.., D, Sk] transposed key or a [.., Sk, D] one), V is [.., Sk, Dv], the mask (optional, added after the scale)
    /// broadcasts to [.., Sq, Sk]; every operand has (batch, head, row, column) strides, 0 where it broadcasts. O is
    /// [batch, heads, Sq, Dv] contiguous. A row whose every score is -inf gives NaN, as a softmax over it does.
    /// The source depends only on <paramref name="paddedHead"/> (the head width rounded up to 16).
    /// </summary>
    public static KernelCode Attention(int paddedHead, long batch, long heads, long sq, long sk, long d, long dv, double scale, long[] qStrides, long[] kStrides, long[] vStrides, long[]? maskStrides)
    {
        if (paddedHead % 16 != 0 || paddedHead < 16 || paddedHead > AttentionMaxHead)
        {
            throw new ArgumentOutOfRangeException(nameof(paddedHead), "a multiple of 16 up to 128");
        }

        var w = new KernelWriter(small: false);
        var heads_ = w.I64("heads", heads);
        var tiles = w.I64("tiles", (sq + AttentionRows - 1) / AttentionRows);
        var total = w.I64("blocks", batch * heads * ((sq + AttentionRows - 1) / AttentionRows));
        var rows = w.I64("sq", sq);
        var keys = w.I64("sk", sk);
        var width = w.I64("d", d);
        var vwidth = w.I64("dv", dv);
        var scaled = w.Float("scale_log2e", scale * 1.4426950408889634);
        string[] Strides(string name, long[] s) => [w.I64(name + "_sb", s[0]), w.I64(name + "_sh", s[1]), w.I64(name + "_sr", s[2]), w.I64(name + "_sc", s[3])];
        var qs = Strides("q", qStrides);
        var ks = Strides("k", kStrides);
        var vs = Strides("v", vStrides);
        var ms = Strides("m", maskStrides ?? [0, 0, 0, 0]);
        var dp = paddedHead;
        w.Body.Append($$"""
                __shared__ __align__(16) unsigned short ks[64][{{dp + 8}}];
                __shared__ __align__(16) unsigned short vt[{{dp}}][72];
                const float NEG_INF = __uint_as_float(0xff800000u);
                const float LOG2E = 1.4426950408889634f;
                const unsigned tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                const i64 blk = blockIdx.x;
                if (blk >= {{total}}) return;
                const i64 bh = blk / {{tiles}};
                const i64 tile = blk - bh * {{tiles}};
                const i64 b = bh / {{heads_}}, h = bh - b * {{heads_}};
                const unsigned short* qp = (const unsigned short*)q + b * {{qs[0]}} + h * {{qs[1]}};
                const unsigned short* kp = (const unsigned short*)k + b * {{ks[0]}} + h * {{ks[1]}};
                const unsigned short* vp = (const unsigned short*)v + b * {{vs[0]}} + h * {{vs[1]}};
                const bw_half* mp = mask ? mask + b * {{ms[0]}} + h * {{ms[1]}} : mask;
                bw_half* op = o + bh * {{rows}} * {{vwidth}};
                const i64 row0 = tile * 64 + warp * 16;
                // Offsets inside one (batch, head) slice fit 32 bits (the planner checks).
                const int kr = (int){{ks[2]}}, kc = (int){{ks[3]}}, vr = (int){{vs[2]}}, vc = (int){{vs[3]}}, kd = (int){{width}}, vd = (int){{vwidth}};

                // This warp's 16 query rows as A fragments (row g and g + 8; columns 2t, 2t + 1 and 8 further).
                unsigned qf[{{dp / 16}}][4];
                #pragma unroll
                for (int kk = 0; kk < {{dp / 16}}; kk++) {
                    for (int i = 0; i < 4; i++) {
                        const i64 r = row0 + g + ((i & 1) ? 8 : 0);
                        const i64 c = kk * 16 + 2 * t + ((i & 2) ? 8 : 0);
                        unsigned lo = 0, hi = 0;
                        if (r < {{rows}}) {
                            if (c < {{width}}) lo = qp[r * {{qs[2]}} + c * {{qs[3]}}];
                            if (c + 1 < {{width}}) hi = qp[r * {{qs[2]}} + (c + 1) * {{qs[3]}}];
                        }
                        qf[kk][i] = lo | (hi << 16);
                    }
                }

                float acc[{{dp / 8}}][4];
                for (int n = 0; n < {{dp / 8}}; n++) { acc[n][0] = 0.f; acc[n][1] = 0.f; acc[n][2] = 0.f; acc[n][3] = 0.f; }
                float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;
                for (i64 k0 = 0; k0 < {{keys}}; k0 += 64) {
                    __syncthreads();
                    // Keys as ks[key][d] and values transposed as vt[d][key], zero past the ends; the walk follows
                    // whichever of an operand's two axes is contiguous, so its loads coalesce, and each thread's loads
                    // (a fixed count, unrolled) are all in flight before the first is stored.
                    const unsigned short* kt0 = kp + k0 * {{ks[2]}};
                    const unsigned short* vt0 = vp + k0 * {{vs[2]}};
                    const int left = (int)({{keys}} - k0 < 64 ? {{keys}} - k0 : 64);
                    if ({{ks[2]}} == 1) {
                        #pragma unroll
                        for (int j = 0; j < {{dp / 2}}; j++) {
                            const int key = (int)(tid & 63), c = (int)(tid >> 6) + 2 * j;
                            ks[key][c] = (key < left && c < kd) ? kt0[key + c * kc] : (unsigned short)0;
                        }
                    } else {
                        #pragma unroll
                        for (int j = 0; j < {{dp / 2}}; j++) {
                            const int i = (int)tid + j * {{AttentionBlock}}, key = i / {{dp}}, c = i - key * {{dp}};
                            ks[key][c] = (key < left && c < kd) ? kt0[key * kr + c * kc] : (unsigned short)0;
                        }
                    }
                    if ({{vs[3]}} == 1) {
                        #pragma unroll
                        for (int j = 0; j < {{dp / 2}}; j++) {
                            const int i = (int)tid + j * {{AttentionBlock}}, key = i / {{dp}}, c = i - key * {{dp}};
                            vt[c][key] = (key < left && c < vd) ? vt0[key * vr + c] : (unsigned short)0;
                        }
                    } else {
                        #pragma unroll
                        for (int j = 0; j < {{dp / 2}}; j++) {
                            const int key = (int)(tid & 63), c = (int)(tid >> 6) + 2 * j;
                            vt[c][key] = (key < left && c < vd) ? vt0[key * vr + c * vc] : (unsigned short)0;
                        }
                    }
                    __syncthreads();

                    // Scores of 64 keys: eight 16x8 tiles per warp, in the log2 domain.
                    float s[8][4];
                    #pragma unroll
                    for (int nb = 0; nb < 8; nb++) {
                        s[nb][0] = 0.f; s[nb][1] = 0.f; s[nb][2] = 0.f; s[nb][3] = 0.f;
                        #pragma unroll
                for (int kk = 0; kk < {{dp / 16}}; kk++) {
                            const unsigned b0 = *(const unsigned*)&ks[nb * 8 + g][kk * 16 + 2 * t];
                            const unsigned b1 = *(const unsigned*)&ks[nb * 8 + g][kk * 16 + 2 * t + 8];
                            bw_mma_16816(s[nb], qf[kk], b0, b1);
                        }
                    }

                    float x0 = NEG_INF, x1 = NEG_INF;
                    #pragma unroll
                    for (int nb = 0; nb < 8; nb++) {
                        for (int i = 0; i < 4; i++) {
                            const i64 key = k0 + nb * 8 + 2 * t + (i & 1);
                            const i64 r = row0 + g + ((i & 2) ? 8 : 0);
                            float val = s[nb][i] * {{scaled}};
                            if (key >= {{keys}}) val = NEG_INF;
                            else if (mp && r < {{rows}}) val += (float)mp[r * {{ms[2]}} + key * {{ms[3]}}] * LOG2E;
                            s[nb][i] = val;
                            if (i & 2) x1 = fmaxf(x1, val); else x0 = fmaxf(x0, val);
                        }
                    }

                    // A row's four threads agree on its maximum; earlier sums and outputs are rescaled to it.
                    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1)); x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
                    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1)); x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
                    const float n0 = fmaxf(m0, x0), n1 = fmaxf(m1, x1);
                    const float z0 = n0 == NEG_INF ? 0.f : n0, z1 = n1 == NEG_INF ? 0.f : n1;
                    const float c0 = exp2f(m0 - z0), c1 = exp2f(m1 - z1);
                    m0 = n0; m1 = n1;
                    l0 *= c0; l1 *= c1;
                    for (int n = 0; n < {{dp / 8}}; n++) { acc[n][0] *= c0; acc[n][1] *= c0; acc[n][2] *= c1; acc[n][3] *= c1; }

                    // Probabilities as A fragments: the accumulators of key tiles 2j and 2j + 1 are the 16x16 tile j.
                    unsigned pa[4][4];
                    #pragma unroll
                    for (int nb = 0; nb < 8; nb++) {
                        const float p0 = exp2f(s[nb][0] - z0), p1 = exp2f(s[nb][1] - z0);
                        const float p2 = exp2f(s[nb][2] - z1), p3 = exp2f(s[nb][3] - z1);
                        l0 += p0 + p1; l1 += p2 + p3;
                        pa[nb >> 1][(nb & 1) ? 2 : 0] = bw_pack_half2(p0, p1);
                        pa[nb >> 1][(nb & 1) ? 3 : 1] = bw_pack_half2(p2, p3);
                    }

                    #pragma unroll
                    for (int kk = 0; kk < 4; kk++) {
                        #pragma unroll
                for (int n = 0; n < {{dp / 8}}; n++) {
                            const unsigned b0 = *(const unsigned*)&vt[n * 8 + g][kk * 16 + 2 * t];
                            const unsigned b1 = *(const unsigned*)&vt[n * 8 + g][kk * 16 + 2 * t + 8];
                            bw_mma_16816(acc[n], pa[kk], b0, b1);
                        }
                    }
                }

                l0 += __shfl_xor_sync(0xffffffffu, l0, 1); l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
                l1 += __shfl_xor_sync(0xffffffffu, l1, 1); l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
                const float nan = __uint_as_float(0x7fc00000u);
                const float i0 = l0 > 0.f ? 1.f / l0 : nan, i1 = l1 > 0.f ? 1.f / l1 : nan;
                #pragma unroll
                for (int n = 0; n < {{dp / 8}}; n++) {
                    for (int i = 0; i < 4; i++) {
                        const i64 c = n * 8 + 2 * t + (i & 1);
                        const i64 r = row0 + g + ((i & 2) ? 8 : 0);
                        if (r < {{rows}} && c < {{vwidth}}) op[r * {{vwidth}} + c] = bw_half(acc[n][i] * ((i & 2) ? i1 : i0));
                    }
                }

            """);
        var code = w.Build($"bw_half* __restrict__ o, const bw_half* __restrict__ q, const bw_half* __restrict__ k, const bw_half* __restrict__ v, const bw_half* __restrict__ mask, {KernelWriter.ArgsParameter}");
        return code with { Source = AttentionHelpers + code.Source };
    }

    /// <summary>Threads to launch <see cref="Attention"/> with: a block per 64 query rows of each (batch, head).</summary>
    public static long AttentionThreads(long batch, long heads, long sq) => batch * heads * ((sq + AttentionRows - 1) / AttentionRows) * AttentionBlock;
}
