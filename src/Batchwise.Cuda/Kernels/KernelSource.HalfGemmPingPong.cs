namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The own fp16 product with its bias and erf GELU in a ping-pong schedule (BATCHWISE_GELU_PRODUCT=pingpong, an
/// experiment until timed on a GPU): each consumer warpgroup its own 128 x 128 tile, the two taking turns at the tensor
/// cores, so one's epilogue (the bias, the GELU, the stores) runs while the other's products do. <see cref="HalfGemm"/>'s
/// cooperative form has both warpgroups on one 128 x 256 tile, then both in its epilogue while the tensor cores wait: 82.8
/// us at 8192 x 3072 x 768 on an H100 against 65.5 without the GELU (session 55's probe).
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Columns of a tile of <see cref="HalfGemmPingPong"/> (wgmma m64n128k16, two a warpgroup a k16 step: its 128 rows).</summary>
    public const int HalfGemmPingPongColumns = 128;

    /// <summary>Stages of <see cref="HalfGemmPingPong"/>'s ring (32 KB each: A's 128 x 64 and W^T's 128 x 64).</summary>
    public const int HalfGemmPingPongStages = 6;

    /// <summary>Where <see cref="HalfGemmPingPong"/>'s epilogue buffers start: after the stages, their full and empty mbarriers and the two warpgroups' turn mbarriers.</summary>
    private const int HalfGemmPingPongEpilogueOffset = (HalfGemmPingPongStages * (HalfGemmTileM + HalfGemmPingPongColumns) * HalfGemmTileK * 2) + (2 * HalfGemmPingPongStages * 8) + 16;

    /// <summary>
    /// Dynamic shared memory of a block of <see cref="HalfGemmPingPong"/> (215,152 bytes: one block an SM): the six
    /// stages, a full and an empty mbarrier a stage, the two consumers' turn mbarriers, the eight consumer warps' epilogue buffers.
    /// </summary>
    public const int HalfGemmPingPongSharedBytes = HalfGemmPingPongEpilogueOffset + (8 * HalfGemmEpilogueWarpBytes);

    /// <summary>
    /// Whether <see cref="HalfGemmPingPong"/> takes an M x N x K product: N in whole 128-column tiles, K in whole 64s, and
    /// every index within 32 bits (rows times N or K).
    /// </summary>
    public static bool HalfGemmPingPongTakes(long m, long n, long k) => n >= HalfGemmPingPongColumns && n % HalfGemmPingPongColumns == 0 && HalfGemmDepthAndIndicesFit(m, n, k);

    /// <summary>Tiles of an M x N product of <see cref="HalfGemmPingPong"/> (row tiles of 128 times column tiles of 128).</summary>
    public static long HalfGemmPingPongTiles(long m, long n) => (m + HalfGemmTileM - 1) / HalfGemmTileM * (n / HalfGemmPingPongColumns);

    /// <summary>wgmma m64n128k16 (fp16 operands from shared memory, fp32 sums; 64 a thread): <see cref="HalfGemmPingPong"/>'s, two a k16 step for a warpgroup's 128 rows.</summary>
    private static readonly string HalfWgmma128Helper = $$"""
        #ifndef BW_WGMMA_F16_N128_HELPERS
        #define BW_WGMMA_F16_N128_HELPERS
        __device__ __forceinline__ void bw_wgmma_64n128k16_f16(float* d, unsigned long long da, unsigned long long db, int accumulate)
        {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {{{string.Join(", ", Enumerable.Range(0, 64).Select(i => $"%{i}"))}}}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                : {{string.Join(", ", Enumerable.Range(0, 64).Select(i => $"\"+f\"(d[{i}])"))}}
                : "l"(da), "l"(db), "r"(accumulate));
        }
        #endif

        """;

    /// <summary>
    /// Y = gelu(X W + bias) (GELU's erf form, <c>bw_gelu_as</c>), fp16 in and out, fp32 sums: M x N x K with X [M, K] and
    /// W^T [N, K] row-major (buffers 1 and 2, each read through its TMA tensor map: <see cref="KernelCode.TensorMaps"/>),
    /// bias [N] (half), Y [M, N] row-major. Persistent, warp-specialized and ping-pong (as cutlass's
    /// KernelTmaWarpSpecializedPingpong): a grid of at most one block a multiprocessor (fewer where there are fewer tiles)
    /// walks the 128 x 128 tiles (tile = block + i x grid, column tiles fastest, so the blocks running together share A's
    /// rows in L2), the block's i-th tile taken by consumer warpgroup i % 2 alone. One thread of warpgroup 0 copies every
    /// 64-wide k step of every tile of the block, in that order, into one ring of six stages: A's 128 x 64 box and W^T's
    /// two 64 x 64 boxes by tensor copies in the 128-byte swizzle (the layout the wgmma descriptors read; rows past M read
    /// as zeros), their 32 KB counted in bytes on the stage's full mbarrier; it waits for a stage's empty mbarrier before
    /// refilling it and never for an epilogue. The consumers take turns at the tensor cores (two turn mbarriers): a
    /// warpgroup issues its tile's products (wgmma m64n128k16 twice a k16 step, its 128 rows; one group in flight; each
    /// stage released once its products are done), hands the turn to the other and, while the other's products run, adds
    /// the bias, applies the GELU to its fp32 sums and writes its tile through shared memory (a warp puts 64 columns of its
    /// 16 rows in its own padded buffer, then stores whole 128-byte rows). Session 55's cooperative form (both warpgroups
    /// on one 128 x 256 tile, then both in its epilogue while the tensor cores waited) took 82.8 us at 8192 x 3072 x 768
    /// on an H100 against 65.5 without the GELU and cuBLASLt + bias 67.0.
    /// </summary>
    public static KernelCode HalfGemmPingPong(long m, long n, long k)
    {
        if (!HalfGemmPingPongTakes(m, n, k))
        {
            throw new ArgumentException("fp16 warpgroup product: N in 128s, K in 64s, indices within 32 bits");
        }

        var (w, rows, cols, depth, columnTiles) = HalfGemmGeluArguments(m, n, k, HalfGemmPingPongColumns);
        const int BM = HalfGemmTileM, BN = HalfGemmPingPongColumns, BK = HalfGemmTileK, S = HalfGemmPingPongStages;
        const int Er = HalfGemmEpilogueRow;
        w.Body.Append($$"""
                {{HalfGemmPrologue("    ", BN, S)}}
                const int M = {{rows}}, N = {{cols}}, K = {{depth}}, KB = K / {{BK}}, NT = {{columnTiles}}, tiles = NT * ((M + {{BM - 1}}) / {{BM}});
                unsigned long long* const turn = empty + {{S}}; // turn[w]: consumer w's products may start
                {{HalfGemmBarrierInit("    ", S, 1, " bw_mbar_init(turn, 1); bw_mbar_init(turn + 1, 1);")}}

                if (wg == 0) {
                    // The producer (one thread): k step kb of the block's tiles in order into stage (its running count) % {{S}} once released.
                    if (tid == 0) {
                        {{HalfGemmProducerLoop("            ", BN, S)}}
                    }
                    return;
                }

                // The consumers: warpgroup cw takes the block's tiles cw, cw + 2, ...; this warp's epilogue buffer.
                const int cw = wg - 1, u = tid & 127, warp = u >> 5, lane = u & 31, g = lane >> 2;
                unsigned char* const eb = sm_ + {{HalfGemmPingPongEpilogueOffset}} + (cw * 4 + warp) * {{HalfGemmEpilogueWarpBytes}};
                for (int lt = cw; ; lt += 2) {
                    const int tile = (int)blockIdx.x + lt * (int)gridDim.x;
                    if (tile >= tiles) break;
                    const int m0 = (tile / NT) * {{BM}}, n0 = (tile % NT) * {{BN}};
                    // The other warpgroup's products of the tile before are issued (its (lt - 1) / 2-th turn handed over).
                    if (lt > 0) bw_mbar_wait(turn + cw, ((lt - 1) >> 1) & 1);
                    float d[{{BN}}];
                    #pragma unroll
                    for (int i = 0; i < {{BN}}; i++) d[i] = 0.f;
                    int it = lt * KB;
                    for (int kb = 0; kb < KB; kb++, it++) {
                        {{HalfGemmStageProducts("            ", BN, S, wholeTile: true)}}
                    }
                    if (u == 0) bw_mbar_arrive(turn + (cw ^ 1));
                    bw_wgmma_wait0();
                    bw_hold_f32x128(d);
                    if (u == 0) bw_mbar_arrive(empty + (it - 1) % {{S}});

                    // Bias and GELU on the fp32 sums (of each 64-row half h, this thread's rows g and g + 8 of its warp's 16,
                    // columns 2t and 2t + 1 of each n8 tile), 64 columns at a time through the warp's buffer, then whole 128-byte rows of Y.
                    #pragma unroll
                    for (int c = 0; c < 4; c++) {
                        const int h = c >> 1, cc = c & 1, row0 = m0 + h * 64 + warp * 16;
                        #pragma unroll
                        for (int jj = 0; jj < 8; jj++) {
                            const int j = h * 16 + cc * 8 + jj, cl = jj * 8 + (lane & 3) * 2, col = n0 + cc * 64 + cl;
                            const float b0 = (float)bias[col], b1 = (float)bias[col + 1];
                            *(unsigned*)(eb + g * {{Er}} + cl * 2) = bw_pack_half2(bw_gelu_as(d[4 * j] + b0), bw_gelu_as(d[4 * j + 1] + b1));
                            *(unsigned*)(eb + (g + 8) * {{Er}} + cl * 2) = bw_pack_half2(bw_gelu_as(d[4 * j + 2] + b0), bw_gelu_as(d[4 * j + 3] + b1));
                        }
                        __syncwarp();
                        #pragma unroll
                        for (int q = 0; q < 4; q++) {
                            const int rr = q * 4 + (lane >> 3), ch = lane & 7;
                            if (row0 + rr < M) *(uint4*)(y + (size_t)(row0 + rr) * N + n0 + cc * 64 + ch * 8) = *(const uint4*)(eb + rr * {{Er}} + ch * 16);
                        }
                        __syncwarp();
                    }
                }

            """);
        return HalfGemmGeluKernel(w, m, n, k, BN, HalfGemmPingPongSharedBytes, HalfWgmma128Helper);
    }
}
