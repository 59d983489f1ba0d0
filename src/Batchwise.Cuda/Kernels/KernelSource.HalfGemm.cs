namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The engine's own fp16 matrix product on Hopper's warpgroup MMA (sm_90a) with its bias and GELU's erf form in the
/// epilogue: Y = gelu(X W + b), X [M, K] row-major, W packed beforehand (<see cref="HalfGemmPackedSource"/>), one
/// fp16 write of Y and no pass after it. Written for the MLP's first product of BERT / ViT at b=64, where cuBLASLt's
/// product and the GELU pass in place take ~101 us (8192 x 3072 x 768, H100) and the pass moves the 50 MB result twice.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Rows of a block's tile of <see cref="HalfGemm"/> (two warpgroups of 64).</summary>
    public const int HalfGemmTileM = 128;

    /// <summary>Columns of a block's tile (wgmma m64n256k16: one instruction a warpgroup a k16 step).</summary>
    public const int HalfGemmTileN = 256;

    /// <summary>K of a stage: 64 halves, one 128-byte row, the 128-byte swizzle's atom.</summary>
    public const int HalfGemmTileK = 64;

    /// <summary>Stages of copies in shared memory (two in flight ahead of the one multiplied).</summary>
    public const int HalfGemmStages = 4;

    /// <summary>Threads of a block: two warpgroups.</summary>
    public const int HalfGemmBlock = 256;

    /// <summary>Bytes of one stage: the A tile (128 x 64 halves) then the B tile (256 x 64).</summary>
    private const int HalfGemmStageBytes = (HalfGemmTileM + HalfGemmTileN) * HalfGemmTileK * 2;

    /// <summary>Dynamic shared memory of a block (196,608 bytes: one block an SM).</summary>
    public const int HalfGemmSharedBytes = HalfGemmStages * HalfGemmStageBytes;

    /// <summary>
    /// Whether <see cref="HalfGemm"/> takes an M x N x K product: N in whole 256-column tiles, K in whole 64s, and every
    /// index within 32 bits (rows times N, packed weights).
    /// </summary>
    public static bool HalfGemmTakes(long m, long n, long k) =>
        m >= 1 && n >= HalfGemmTileN && n % HalfGemmTileN == 0 && k >= HalfGemmTileK && k % HalfGemmTileK == 0
        && (m + HalfGemmTileM) * Math.Max(n, k) < int.MaxValue && n * k < int.MaxValue;

    /// <summary>Tiles of an M x N product (row tiles of 128 times column tiles of 256).</summary>
    public static long HalfGemmTiles(long m, long n) => (m + HalfGemmTileM - 1) / HalfGemmTileM * (n / HalfGemmTileN);

    /// <summary>
    /// Where element <paramref name="i"/> of the packed weights comes from: (column n, row k) of the K x N product's B.
    /// The packing is each (256-column tile, 64-row k step)'s shared-memory image, 32 KB contiguous, in tile then k order:
    /// columns in groups of 8 (1,024 bytes apart), a column's 64 k values as one 128-byte row whose 16-byte chunk c lands
    /// at c XOR (column mod 8) — wgmma's K-major layout with the 128-byte swizzle, which one stage's copies take as it is.
    /// </summary>
    public static (long N, long K) HalfGemmPackedSource(long i, long k)
    {
        var e = i % 8;
        var chunk = (i / 8) % 8;
        var r = (i / 64) % 8;
        var g = (i / 512) % (HalfGemmTileN / 8);
        var kb = (i / (HalfGemmTileN * HalfGemmTileK)) % (k / HalfGemmTileK);
        var nt = i / (HalfGemmTileN * HalfGemmTileK) / (k / HalfGemmTileK);
        return ((nt * HalfGemmTileN) + (g * 8) + r, (kb * HalfGemmTileK) + ((chunk ^ r) * 8) + e);
    }

    /// <summary>
    /// wgmma's fp16 pieces (sm_90a; the CPU test runner emulates them from their PTX definitions under the same names): a
    /// K-major matrix descriptor with the 128-byte swizzle (8-row groups 1,024 bytes apart; the start advanced 32 bytes a
    /// k16 step), the m64n256k16 product with fp32 sums, both operands from shared memory (D = A B, or D += A B where
    /// <c>accumulate</c>), a wait leaving the latest group in flight, a hold that keeps the sums in their registers across
    /// the asynchronous products (as cutlass's operand fence).
    /// </summary>
    private static readonly string HalfWgmmaHelper = $$"""
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
                "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {{{string.Join(", ", Enumerable.Range(0, 128).Select(i => $"%{i}"))}}}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                : {{string.Join(", ", Enumerable.Range(0, 128).Select(i => $"\"+f\"(d[{i}])"))}}
                : "l"(da), "l"(db), "r"(accumulate));
        }
        __device__ __forceinline__ void bw_wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
        __device__ __forceinline__ void bw_hold_f32x128(float* d)
        {
            #pragma unroll
            for (int i = 0; i < 128; i++) asm volatile("" : "+f"(d[i]) :: "memory");
        }
        #endif

        """;

    /// <summary>
    /// Y = gelu(X W + bias) (GELU's erf form, <c>bw_gelu</c>), fp16 in and out, fp32 sums: M x N x K with X
    /// row-major (row pitch K), W packed (<see cref="HalfGemmPackedSource"/>), bias [N] (half), Y [M, N] row-major. A block
    /// of two warpgroups a 128 x 256 tile (column tiles fastest, so the blocks running together share A's rows in L2):
    /// cp.async copies of its 64-wide k steps into four stages (two in flight ahead of the one multiplied; A's rows placed
    /// in the 128-byte swizzle, B's packed image copied as it is), each warpgroup multiplying its 64 rows (wgmma
    /// m64n256k16, both operands from shared memory), then bias and GELU applied to the fp32 sums and one fp16 write.
    /// Session 52's probe of this kernel on an H100: 111-113 us at 8192 x 3072 x 768 against cuBLASLt's product + the GELU
    /// pass at 101-105 (0.94x; 91 us without the GELU, whose erf on the sums is exposed), ahead at M 128 and 1,024 by
    /// back-to-back launches (1.44-1.49x), which a CUDA graph's timing has not confirmed: an experiment, off by default.
    /// </summary>
    public static KernelCode HalfGemm(long m, long n, long k)
    {
        if (!HalfGemmTakes(m, n, k))
        {
            throw new ArgumentException("fp16 warpgroup product: N in 256s, K in 64s, indices within 32 bits");
        }

        var w = new KernelWriter(small: true);
        var (rows, cols, depth) = (w.I32("m", (int)m), w.I32("n", (int)n), w.I32("k", (int)k));
        var columnTiles = w.I32("column_tiles", (int)(n / HalfGemmTileN));
        const int BN = HalfGemmTileN, BK = HalfGemmTileK, S = HalfGemmStages, Ab = HalfGemmTileM * BK * 2;
        const int Dist = S - 2;
        w.Body.Append($$"""
                extern __shared__ __align__(1024) unsigned short bw_dynamic_shared_sw128[]; // its own name: other kernels of the program declare theirs 16-byte aligned
                unsigned char* const sm_ = (unsigned char*)bw_dynamic_shared_sw128;
                const int tid = (int)threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
                const int M = {{rows}}, N = {{cols}}, K = {{depth}}, KB = K / {{BK}};
                const int m0 = ((int)blockIdx.x / {{columnTiles}}) * {{HalfGemmTileM}}, n0 = ((int)blockIdx.x % {{columnTiles}}) * {{BN}};
                const unsigned short* const xs = (const unsigned short*)x;
                const unsigned short* const bs = (const unsigned short*)wp + (size_t)((int)blockIdx.x % {{columnTiles}}) * KB * {{BN * BK}};

                // k step kb into stage slot kb % {{S}}: A's 128 rows of 64 as 16-byte chunks placed in the 128-byte swizzle
                // (chunk c of row r at c ^ (r & 7)), rows past M zero-filled; B's image as it is packed (32 KB, contiguous).
                auto load = [&](int kb) {
                    unsigned char* const st = sm_ + (kb % {{S}}) * {{HalfGemmStageBytes}};
                    #pragma unroll
                    for (int it = 0; it < {{HalfGemmTileM * BK / 8 / HalfGemmBlock}}; it++) {
                        const int i = it * {{HalfGemmBlock}} + tid, r = i & 7, c = (i >> 3) & 7, g = i >> 6, row = m0 + g * 8 + r;
                        bw_cp_async16((unsigned short*)(st + g * 1024 + r * 128 + ((c ^ r) << 4)), xs + (size_t)(row < M ? row : M - 1) * K + kb * {{BK}} + c * 8, row < M);
                    }
                    const unsigned short* const b = bs + (size_t)kb * {{BN * BK}};
                    #pragma unroll
                    for (int it = 0; it < {{BN * BK / 8 / HalfGemmBlock}}; it++) {
                        const int i = it * {{HalfGemmBlock}} + tid;
                        bw_cp_async16((unsigned short*)(st + {{Ab}} + i * 16), b + i * 8, true);
                    }
                };

                float d[{{BN / 2}}];
                #pragma unroll
                for (int i = 0; i < {{BN / 2}}; i++) d[i] = 0.f;
                #pragma unroll
                for (int kb = 0; kb < {{Dist}}; kb++) { if (kb < KB) load(kb); bw_cp_async_commit(); }
                for (int kb = 0; kb < KB; kb++) {
                    // Step kb landed for every thread, and every warpgroup's products of step kb - 2 are done (each waited
                    // for them before this barrier): slot (kb + {{Dist}}) % {{S}} is free for step kb + {{Dist}}'s copies.
                    bw_cp_async_wait<{{Dist - 1}}>();
                    bw_fence_proxy_async();
                    __syncthreads();
                    if (kb + {{Dist}} < KB) load(kb + {{Dist}});
                    bw_cp_async_commit();
                    unsigned char* const st = sm_ + (kb % {{S}}) * {{HalfGemmStageBytes}};
                    bw_wgmma_fence();
                    bw_hold_f32x128(d);
                    #pragma unroll
                    for (int ks = 0; ks < {{BK / 16}}; ks++)
                        bw_wgmma_64n256k16_f16(d, bw_wgmma_desc_sw128(st + wg * 8192 + ks * 32), bw_wgmma_desc_sw128(st + {{Ab}} + ks * 32), (kb | ks) != 0);
                    bw_wgmma_commit();
                    bw_wgmma_wait1();
                    bw_hold_f32x128(d);
                }
                bw_wgmma_wait0();
                bw_hold_f32x128(d);

                // Bias and GELU on the fp32 sums, one fp16 write: this thread's rows g and g + 8 of its warp's 16, columns
                // 2t and 2t + 1 of each n8 tile.
                const int row = m0 + wg * 64 + warp * 16 + (lane >> 2);
                unsigned* const yw = (unsigned*)y;
                #pragma unroll
                for (int j = 0; j < {{BN / 8}}; j++) {
                    const int col = n0 + j * 8 + (lane & 3) * 2;
                    const float b0 = (float)bias[col], b1 = (float)bias[col + 1];
                    const float v0 = bw_gelu(d[4 * j] + b0), v1 = bw_gelu(d[4 * j + 1] + b1), v2 = bw_gelu(d[4 * j + 2] + b0), v3 = bw_gelu(d[4 * j + 3] + b1);
                    if (row < M) yw[((size_t)row * N + col) / 2] = bw_pack_half2(v0, v1);
                    if (row + 8 < M) yw[((size_t)(row + 8) * N + col) / 2] = bw_pack_half2(v2, v3);
                }

            """);
        var code = w.Build($"bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wp, const bw_half* __restrict__ bias, {KernelWriter.ArgsParameter}");
        var source = code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __launch_bounds__({HalfGemmBlock}, 1) ", StringComparison.Ordinal);
        return code with { Source = AttentionHelpers + Int8WgmmaHelper + HalfWgmmaHelper + source, SharedBytes = HalfGemmSharedBytes };
    }
}
