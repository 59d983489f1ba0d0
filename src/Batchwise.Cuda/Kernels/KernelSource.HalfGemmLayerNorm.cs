namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The own fp16 product with the residual add and the LayerNorm after it in its epilogue (an experiment, off by default:
/// BATCHWISE_LAYERNORM_PRODUCT=own): Y = LayerNorm(X W + bias + R) over rows of N (256 or 192 columns a block, up to eight), the post-LN encoder's
/// attention output projection and MLP second product (BERT's and DistilBERT's N = 768: three blocks a row tile).
/// </summary>
internal static partial class KernelSource
{
    /// <summary>The most blocks a row tile's cluster takes (a portable cluster size): rows of up to 2,048 columns.</summary>
    public const int HalfGemmLayerNormMostBlocks = 8;

    /// <summary>The widths a block's tile may take: 256 columns (wgmma n256) or 192 (n192).</summary>
    private static readonly int[] HalfGemmLayerNormWidths = [HalfGemmTileN, 192];

    /// <summary>
    /// Dynamic shared memory of a block of tiles <paramref name="columns"/> wide: the stages, their mbarriers, the eight
    /// consumer warps' epilogue buffers, then its 128 rows' (sum, squared deviations) pairs.
    /// </summary>
    public static int HalfGemmLayerNormSharedBytes(int columns) => StatisticsOffset(columns) + (HalfGemmTileM * 8);

    private static int StatisticsOffset(int columns) => (HalfGemmStages * HalfGemmStageBytesOf(columns)) + (2 * HalfGemmStages * 8) + (8 * HalfGemmEpilogueWarpBytes);

    /// <summary>
    /// Whether <see cref="HalfGemmLayerNorm"/> takes an M x N x K product: K in 64s, N a whole number of 256- or
    /// 192-column tiles, at most <see cref="HalfGemmLayerNormMostBlocks"/> of them (a row's blocks are one cluster), and
    /// every index within 32 bits.
    /// </summary>
    public static bool HalfGemmLayerNormTakes(long m, long n, long k) => HalfGemmDepthAndIndicesFit(m, n, k) && HalfGemmLayerNormWidths.Any(c => RowFits(n, c));

    /// <summary>Whether a row of N is whole tiles <paramref name="columns"/> wide, at most a cluster's <see cref="HalfGemmLayerNormMostBlocks"/>.</summary>
    private static bool RowFits(long n, int columns) => n % columns == 0 && n / columns <= HalfGemmLayerNormMostBlocks;

    /// <summary>
    /// The tile width for an M x N product on <paramref name="multiprocessors"/> SMs (one block an SM: its shared memory):
    /// of 256 and 192 that divide N in at most eight blocks, the one with the least waves x width (a block's time goes
    /// with its width), 256 on a tie. BERT b=64 (8,192 rows, N = 768, 132 SMs): 192 blocks of 256 are two waves, the
    /// second half empty; 256 of 192 are two full ones.
    /// </summary>
    public static int HalfGemmLayerNormColumns(long m, long n, int multiprocessors)
    {
        var rowTiles = (m + HalfGemmTileM - 1) / HalfGemmTileM;
        return HalfGemmLayerNormWidths.Where(c => RowFits(n, c))
            .OrderBy(c => (rowTiles * (n / c) + multiprocessors - 1) / Math.Max(1, multiprocessors) * c).First();
    }

    /// <summary>Blocks of a launch: a cluster of N / columns blocks for each 128-row tile.</summary>
    public static long HalfGemmLayerNormBlocks(long m, long n, int columns) => (m + HalfGemmTileM - 1) / HalfGemmTileM * (n / columns);

    /// <summary>
    /// Y = LayerNorm(X W + bias + R) gamma + beta over each row of N, fp16 in and out, fp32 sums and statistics: X [M, K]
    /// and W^T [N, K] row-major read by TMA tensor copies (buffers 1 and 2, <see cref="KernelCode.TensorMaps"/>), bias,
    /// gamma and beta [N] (half), R and Y [M, N] row-major. A block computes a 128 x <paramref name="columns"/> tile (256
    /// or 192, <see cref="HalfGemmLayerNormColumns"/>) as <see cref="HalfGemm"/> does (a producer thread's tensor copies
    /// through four stages, two consumer warpgroups of 64 rows on wgmma m64n256k16 or m64n192k16), one tile a block: the
    /// N / columns blocks of a row tile are one thread-block cluster. Each adds the bias and R (read a warp's 16 rows x 64
    /// columns at a time as whole 128-byte rows through its epilogue buffer) to its sums, reduces each of its rows' values
    /// to their sum and squared deviations from their own mean (quad shuffles), leaves them in its shared memory, and after
    /// the cluster's barrier reads every block's through distributed shared memory, in rank order (the same sums in every
    /// block), combines them (Chan et al.: mean = sum S_i / N, M2 = sum Q_i + c sum (S_i / c - mean)^2, c the block's
    /// columns), normalizes, applies gamma and beta and writes Y once, through the buffer as whole rows. A second barrier keeps every block until its peers have read its statistics. On the CPU test runner the
    /// grid runs twice (emulated clusters): the products and statistics, then the products again and the normalization.
    /// </summary>
    public static KernelCode HalfGemmLayerNorm(long m, long n, long k, double epsilon, int columns)
    {
        if (!HalfGemmDepthAndIndicesFit(m, n, k) || !HalfGemmLayerNormWidths.Contains(columns) || !RowFits(n, columns))
        {
            throw new ArgumentException("fp16 warpgroup product + LayerNorm: N in whole 256- or 192-column tiles, at most eight, K in 64s, indices within 32 bits");
        }

        var w = new KernelWriter(small: true);
        var (rows, depth) = (w.I32("m", (int)m), w.I32("k", (int)k));
        var eps = w.Float("epsilon", epsilon);
        const int BM = HalfGemmTileM, BK = HalfGemmTileK, S = HalfGemmStages, Er = HalfGemmEpilogueRow;
        var (BN, Sb, Stats, blocks) = (columns, HalfGemmStageBytesOf(columns), StatisticsOffset(columns), (int)(n / columns));
        w.Body.Append($$"""
                {{HalfGemmPrologue("    ", BN)}}
                const int M = {{rows}}, N = {{n}}, K = {{depth}}, KB = K / {{BK}};
                // The cluster's blocks are consecutive in x: block rank of row tile blockIdx.x / {{blocks}} takes its columns rank x {{BN}}.
                const int rank = (int)blockIdx.x % {{blocks}}, m0 = ((int)blockIdx.x / {{blocks}}) * {{BM}}, n0 = rank * {{BN}};
                {{HalfGemmBarrierInit("    ")}}

                if (wg == 0) {
                    // The producer: one thread copies the tile's k steps; the warpgroup keeps the cluster barriers' count.
                    if (tid == 0) {
                        int it = 0;
                        for (int kb = 0; kb < KB; kb++, it++) {
                            {{HalfGemmStageCopies("                ", BN)}}
                        }
                    }
                    __syncwarp();
                    bw_cluster_sync();
                    bw_cluster_sync();
                    return;
                }

                // The consumers: warpgroup cw's 64 rows of the tile; this warp's epilogue buffer.
                const int cw = wg - 1, u = tid & 127, warp = u >> 5, lane = u & 31, g = lane >> 2;
                unsigned char* const eb = sm_ + {{(S * Sb) + (2 * S * 8)}} + (cw * 4 + warp) * {{HalfGemmEpilogueWarpBytes}};
                float d[{{BN / 2}}];
                #pragma unroll
                for (int i = 0; i < {{BN / 2}}; i++) d[i] = 0.f;
                int it = 0;
                for (int kb = 0; kb < KB; kb++, it++) {
                    {{HalfGemmStageProducts("        ", BN)}}
                }
                bw_wgmma_wait0();
                bw_hold_f32x{{BN / 2}}(d);

                // v = the sums + bias + R (this thread's rows g and g + 8 of its warp's 16, columns 2t and 2t + 1 of each n8
                // tile): R's 16 rows x 64 columns at a time into the warp's buffer as whole 128-byte rows, then read back.
                const int row0 = m0 + cw * 64 + warp * 16;
                #pragma unroll
                for (int c = 0; c < {{BN / 64}}; c++) {
                    #pragma unroll
                    for (int q = 0; q < 4; q++) {
                        const int rr = q * 4 + (lane >> 3), ch = lane & 7;
                        *(uint4*)(eb + rr * {{Er}} + ch * 16) = row0 + rr < M ? *(const uint4*)(res + (size_t)(row0 + rr) * N + n0 + c * 64 + ch * 8) : make_uint4(0u, 0u, 0u, 0u);
                    }
                    __syncwarp();
                    #pragma unroll
                    for (int jj = 0; jj < 8; jj++) {
                        const int j = c * 8 + jj, cl = jj * 8 + (lane & 3) * 2, col = n0 + c * 64 + cl;
                        const float b0 = (float)bias[col], b1 = (float)bias[col + 1];
                        const bw_half* const ra = (const bw_half*)(eb + g * {{Er}} + cl * 2);
                        const bw_half* const rb = (const bw_half*)(eb + (g + 8) * {{Er}} + cl * 2);
                        d[4 * j] += b0 + (float)ra[0];
                        d[4 * j + 1] += b1 + (float)ra[1];
                        d[4 * j + 2] += b0 + (float)rb[0];
                        d[4 * j + 3] += b1 + (float)rb[1];
                    }
                    __syncwarp();
                }

                // This block's {{BN}} columns of rows g and g + 8: their sum, then squared deviations from their own mean.
                float sa = 0.f, sb = 0.f;
                #pragma unroll
                for (int j = 0; j < {{BN / 8}}; j++) { sa += d[4 * j] + d[4 * j + 1]; sb += d[4 * j + 2] + d[4 * j + 3]; }
                sa += __shfl_xor_sync(0xffffffffu, sa, 1); sa += __shfl_xor_sync(0xffffffffu, sa, 2);
                sb += __shfl_xor_sync(0xffffffffu, sb, 1); sb += __shfl_xor_sync(0xffffffffu, sb, 2);
                float qa = 0.f, qb = 0.f;
                #pragma unroll
                for (int j = 0; j < {{BN / 8}}; j++) {
                    float e = d[4 * j] - sa * (1.f / {{BN}}); qa = fmaf(e, e, qa);
                    e = d[4 * j + 1] - sa * (1.f / {{BN}}); qa = fmaf(e, e, qa);
                    e = d[4 * j + 2] - sb * (1.f / {{BN}}); qb = fmaf(e, e, qb);
                    e = d[4 * j + 3] - sb * (1.f / {{BN}}); qb = fmaf(e, e, qb);
                }
                qa += __shfl_xor_sync(0xffffffffu, qa, 1); qa += __shfl_xor_sync(0xffffffffu, qa, 2);
                qb += __shfl_xor_sync(0xffffffffu, qb, 1); qb += __shfl_xor_sync(0xffffffffu, qb, 2);
                float* const part = bw_cluster_tile((float*)(sm_ + {{Stats}}));
                const int ia = cw * 64 + warp * 16 + g, ib = ia + 8;
                if (bw_cluster_computes() && (lane & 3) == 0) {
                    part[2 * ia] = sa; part[2 * ia + 1] = qa;
                    part[2 * ib] = sb; part[2 * ib + 1] = qb;
                }
                bw_cluster_sync();
                if (bw_cluster_reduces()) {
                    // Every block's statistics of rows g and g + 8, in rank order: the mean and M2 over the whole row.
                    float ta = 0.f, tb = 0.f, pa[{{blocks}}], pb[{{blocks}}], xa[{{blocks}}], xb[{{blocks}}];
                    #pragma unroll
                    for (int r = 0; r < {{blocks}}; r++) {
                        const float* const peer = bw_cluster_peer(part, (unsigned)rank, (unsigned)r);
                        pa[r] = peer[2 * ia]; xa[r] = peer[2 * ia + 1];
                        pb[r] = peer[2 * ib]; xb[r] = peer[2 * ib + 1];
                        ta += pa[r]; tb += pb[r];
                    }
                    const float meanA = ta * (1.f / N), meanB = tb * (1.f / N);
                    float ma = 0.f, mb = 0.f;
                    #pragma unroll
                    for (int r = 0; r < {{blocks}}; r++) {
                        const float ea = pa[r] * (1.f / {{BN}}) - meanA, ebr = pb[r] * (1.f / {{BN}}) - meanB;
                        ma += xa[r] + {{BN}}.f * ea * ea;
                        mb += xb[r] + {{BN}}.f * ebr * ebr;
                    }
                    const float ia2 = rsqrtf(ma * (1.f / N) + {{eps}}), ib2 = rsqrtf(mb * (1.f / N) + {{eps}});
                    #pragma unroll
                    for (int c = 0; c < {{BN / 64}}; c++) {
                        #pragma unroll
                        for (int jj = 0; jj < 8; jj++) {
                            const int j = c * 8 + jj, cl = jj * 8 + (lane & 3) * 2, col = n0 + c * 64 + cl;
                            const float g0 = (float)gamma[col], g1 = (float)gamma[col + 1], e0 = (float)beta[col], e1 = (float)beta[col + 1];
                            *(unsigned*)(eb + g * {{Er}} + cl * 2) = bw_pack_half2(fmaf((d[4 * j] - meanA) * ia2, g0, e0), fmaf((d[4 * j + 1] - meanA) * ia2, g1, e1));
                            *(unsigned*)(eb + (g + 8) * {{Er}} + cl * 2) = bw_pack_half2(fmaf((d[4 * j + 2] - meanB) * ib2, g0, e0), fmaf((d[4 * j + 3] - meanB) * ib2, g1, e1));
                        }
                        {{HalfGemmStoreWarpRows("            ")}}
                    }
                }
                bw_cluster_sync(); // no block leaves while a peer may still read its statistics

            """);
        var code = w.Build($"bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const bw_half* __restrict__ bias, const bw_half* __restrict__ res, const bw_half* __restrict__ gamma, const bw_half* __restrict__ beta, const __grid_constant__ bw_tensor_map map_x, const __grid_constant__ bw_tensor_map map_w, {KernelWriter.ArgsParameter}");
        var source = code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __cluster_dims__({blocks}, 1, 1) __launch_bounds__({HalfGemmBlock}, 1) ", StringComparison.Ordinal);
        HalfTensorMap[] maps = [new(1, m, k, BM, BK), new(2, n, k, BN / 2, BK)];
        return code with
        {
            Source = AttentionHelpers + Int8WgmmaHelper + HalfWgmmaHelper + (columns == HalfGemmTileN ? string.Empty : HalfWgmma192Helper) + ClusterHelpers + source,
            SharedBytes = HalfGemmLayerNormSharedBytes(columns),
            TensorMaps = maps,
        };
    }
}
