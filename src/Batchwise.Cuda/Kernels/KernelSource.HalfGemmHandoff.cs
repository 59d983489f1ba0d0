namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The own fp16 product with its bias and erf GELU, the GELU handed off (BATCHWISE_GELU_PRODUCT=handoff, an experiment
/// until timed on a GPU): the consumer warpgroups write a tile's biased sums to shared memory in fp16 and go on to the
/// next tile's products while three warps of the producer warpgroup apply the GELU and store the tile. In
/// <see cref="HalfGemm"/>'s cooperative form both consumers apply it after their products while the tensor cores wait
/// (~17 us of 82.8 at 8192 x 3072 x 768 on an H100, session 55's probe); a ping-pong with 64-row tiles lost to its doubled
/// copies of W^T (session 54: 95.3 us without the GELU against the cooperative form's 66.1).
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Stages of <see cref="HalfGemmHandoff"/>'s ring (48 KB each: A's 128 x 64 and W^T's 256 x 64); the staged tile takes the fourth's room.</summary>
    public const int HalfGemmHandoffStages = 3;

    /// <summary>Bytes of a staged tile's row: 256 halves and 16 bytes of pad, so a warp's half2 writes of eight rows fall on 32 banks.</summary>
    private const int HalfGemmHandoffRow = (HalfGemmTileN * 2) + 16;

    /// <summary>Where the staged tile starts: after the stages, their full and empty mbarriers and the staged tile's two.</summary>
    private const int HalfGemmHandoffStagingOffset = (HalfGemmHandoffStages * (HalfGemmTileM + HalfGemmTileN) * HalfGemmTileK * 2) + (2 * HalfGemmHandoffStages * 8) + 16;

    /// <summary>Dynamic shared memory of a block of <see cref="HalfGemmHandoff"/> (215,104 bytes: one block an SM): the three stages, their mbarriers, the staged tile's two, the staged 128 x 256 tile.</summary>
    public const int HalfGemmHandoffSharedBytes = HalfGemmHandoffStagingOffset + (HalfGemmTileM * HalfGemmHandoffRow);

    /// <summary>Threads of the producer warpgroup that apply the GELU and store: its warps 1 to 3 (warp 0's first thread issues the copies).</summary>
    private const int HalfGemmHandoffEpilogueThreads = 96;

    /// <summary>
    /// Y = gelu(X W + bias) as <see cref="HalfGemm"/> computes it (the same 128 x 256 tiles, warp-specialized and
    /// persistent, the two consumer warpgroups on 64 rows each of a tile, wgmma m64n256k16), in a ring of three stages,
    /// with its epilogue handed off: after a tile's products the consumers add the bias to their fp32 sums and write them
    /// as halves into the staged tile in shared memory (as cuBLASLt's product with its bias writes Y before the GELU pass:
    /// the same rounding), announce it on the staged tile's full mbarrier and go on to their next tile's products; warps
    /// 1 to 3 of the producer warpgroup wait for it, each reads whole 512-byte rows of it, applies the GELU
    /// (<c>bw_gelu_as</c>) and writes the row of Y with 16-byte stores, and together they release it on its empty
    /// mbarrier, for which the consumers wait before staging their next tile.
    /// </summary>
    public static KernelCode HalfGemmHandoff(long m, long n, long k)
    {
        if (!HalfGemmTakes(m, n, k))
        {
            throw new ArgumentException("fp16 warpgroup product: N in 256s, K in 64s, indices within 32 bits");
        }

        var (w, rows, cols, depth, columnTiles) = HalfGemmGeluArguments(m, n, k, HalfGemmTileN);
        const int BM = HalfGemmTileM, BN = HalfGemmTileN, BK = HalfGemmTileK, S = HalfGemmHandoffStages, Hr = HalfGemmHandoffRow;
        w.Body.Append($$"""
                {{HalfGemmPrologue("    ", BN, S)}}
                const int M = {{rows}}, N = {{cols}}, K = {{depth}}, KB = K / {{BK}}, NT = {{columnTiles}}, tiles = NT * ((M + {{BM - 1}}) / {{BM}});
                unsigned long long* const staged = empty + {{S}}; // [0]: the staged tile written (every consumer thread), [1]: read (every epilogue thread)
                unsigned char* const sb = sm_ + {{HalfGemmHandoffStagingOffset}};
                {{HalfGemmBarrierInit("    ", S, 2, $" bw_mbar_init(staged, 256); bw_mbar_init(staged + 1, {HalfGemmHandoffEpilogueThreads});")}}

                if (wg == 0) {
                    if (tid == 0) {
                        // The producer (one thread): k step kb of a tile into stage (its running count) % {{S}} once the consumers released it.
                        {{HalfGemmProducerLoop("            ", BN, S)}}
                    } else if (tid >= 32) {
                        // The epilogue (warps 1 to 3): each staged tile's rows ew, ew + 3, ...: 8 halves a lane, the GELU, 16-byte stores of Y.
                        const int ew = (tid >> 5) - 1, lane = tid & 31;
                        int i = 0;
                        for (int tile = (int)blockIdx.x; tile < tiles; tile += (int)gridDim.x, i++) {
                            const int m0 = (tile / NT) * {{BM}}, n0 = (tile % NT) * {{BN}};
                            bw_mbar_wait(staged, i & 1);
                            for (int r = ew; r < {{BM}} && m0 + r < M; r += 3) {
                                const uint4 v = *(const uint4*)(sb + r * {{Hr}} + lane * 16);
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
                    const int n0 = (tile % NT) * {{BN}};
                    float d[{{BN / 2}}];
                    #pragma unroll
                    for (int q = 0; q < {{BN / 2}}; q++) d[q] = 0.f;
                    for (int kb = 0; kb < KB; kb++, it++) {
                        {{HalfGemmStageProducts("            ", BN, S)}}
                    }
                    bw_wgmma_wait0();
                    bw_hold_f32x128(d);
                    if (u == 0) bw_mbar_arrive(empty + (it - 1) % {{S}});

                    // The sums + bias as halves into the staged tile (this thread's rows g and g + 8 of its warp's 16, columns
                    // 2t and 2t + 1 of each n8 tile), once the epilogue has read the tile before.
                    if (i > 0) bw_mbar_wait(staged + 1, (i - 1) & 1);
                    unsigned char* const ra = sb + (cw * 64 + warp * 16 + g) * {{Hr}};
                    #pragma unroll
                    for (int j = 0; j < {{BN / 8}}; j++) {
                        const int cl = j * 8 + (lane & 3) * 2;
                        const float b0 = (float)bias[n0 + cl], b1 = (float)bias[n0 + cl + 1];
                        *(unsigned*)(ra + cl * 2) = bw_pack_half2(d[4 * j] + b0, d[4 * j + 1] + b1);
                        *(unsigned*)(ra + 8 * {{Hr}} + cl * 2) = bw_pack_half2(d[4 * j + 2] + b0, d[4 * j + 3] + b1);
                    }
                    bw_mbar_arrive(staged);
                }

            """);
        return HalfGemmGeluKernel(w, m, n, k, BN, HalfGemmHandoffSharedBytes);
    }
}
