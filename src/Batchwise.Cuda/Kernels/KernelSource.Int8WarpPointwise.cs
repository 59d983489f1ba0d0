namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The int8 1x1 convolution of <see cref="KernelSource.Int8Pointwise"/> with every warp its own pipeline: no block-wide
/// barrier once the filter is in shared memory.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="Int8WarpPointwise"/>: eight warps, each streaming its own pixel tiles.</summary>
    public const int Int8WarpPointwiseBlock = 256;

    /// <summary>Output pixels of one warp's tile of <see cref="Int8WarpPointwise"/> (one m16 row of products).</summary>
    public const int Int8WarpPointwiseTileM = 16;

    /// <summary>
    /// Shared memory of one block of <see cref="Int8WarpPointwise"/>: the filter block [128][C + 16], the block's scales and
    /// offsets (1 KB), and for each of its eight warps <paramref name="stages"/> input tiles [16][C + 16] and
    /// residual-then-output tiles [16][144] (bytes); with a projection shortcut of <paramref name="projectionChannels"/>
    /// channels computed in it, its filter block, scales and offsets and each warp's stages of its input tiles too.
    /// <paramref name="warps"/> warps a block (eight unless <see cref="Int8WarpPointwiseWarps"/> gives more); a warp's tiles
    /// <paramref name="rows"/> pixels (16, or <see cref="Int8WarpPointwiseWideTileM"/>).
    /// </summary>
    public static int Int8WarpPointwiseSharedBytes(long channels, int stages, long projectionChannels = 0, int warps = Int8WarpPointwiseBlock / 32, int rows = Int8WarpPointwiseTileM) =>
        checked((int)((Int8PointwiseTileN * (channels + 16)) + (2 * Int8PointwiseTileN * 4) + (warps * stages * ((rows * (channels + 16)) + (rows * (Int8PointwiseTileN + 16))))
            + (projectionChannels == 0 ? 0 : (Int8PointwiseTileN * (projectionChannels + 16)) + (2 * Int8PointwiseTileN * 4) + (warps * stages * Int8WarpPointwiseTileM * (projectionChannels + 16)))));

    /// <summary>
    /// Blocks of <see cref="Int8WarpPointwise"/> resident on an SM: <paramref name="most"/> (its launch bounds) where that
    /// many blocks' shared memory fits in <paramref name="sharedPerSm"/> bytes (1 KB reserved a block), else as many as
    /// fit, at least one.
    /// </summary>
    public static int Int8WarpPointwiseBlocksPerSm(long channels, int stages, int sharedPerSm, int most = Int8PointwiseResidentBlocks, long projectionChannels = 0, int warps = Int8WarpPointwiseBlock / 32) =>
        ResidentBlocks(Int8WarpPointwiseSharedBytes(channels, stages, projectionChannels, warps), sharedPerSm, most);

    /// <summary>
    /// Warps a block of <see cref="Int8WarpPointwise"/> where only one block fits an SM (256 input channels: 142 KB at
    /// eight warps): as many as fit <paramref name="sharedPerSm"/> up to <paramref name="most"/> (an SM's sixteen, as
    /// two blocks of eight give the layers of fewer channels); eight where two or more blocks of eight fit.
    /// </summary>
    public static int Int8WarpPointwiseWarps(long channels, int stages, int sharedPerSm, int most, long projectionChannels = 0, int rows = Int8WarpPointwiseTileM) =>
        // 16-pixel tiles keep at least eight warps; 32-pixel tiles take twice a warp's shared memory and as many warps as
        // fit, fewer than eight where eight do not (seven at 256 input channels).
        WarpsThatFit(warps => Int8WarpPointwiseSharedBytes(channels, stages, projectionChannels, warps, rows), sharedPerSm, most, keepEight: rows == Int8WarpPointwiseTileM, step: 1);

    /// <summary>
    /// Warps a block of a persistent pointwise kernel whose shared memory at a warp count is <paramref name="sharedBytes"/>:
    /// eight where two blocks of eight fit an SM's <paramref name="sharedPerSm"/>; else as many as fit, from
    /// <paramref name="most"/> (at least eight) down in steps of <paramref name="step"/>, never below eight where
    /// <paramref name="keepEight"/> (which also keeps eight when <paramref name="most"/> asks no more), else below it where
    /// eight do not fit.
    /// </summary>
    private static int WarpsThatFit(Func<int, int> sharedBytes, int sharedPerSm, int most, bool keepEight, int step)
    {
        const int Eight = Int8WarpPointwiseBlock / 32;
        if (ResidentBlocks(sharedBytes(Eight), sharedPerSm, 2) >= 2 || (keepEight && most <= Eight))
        {
            return Eight;
        }

        var (warps, fewest) = (Math.Max(most, Eight) / step * step, keepEight ? Eight : step);
        while (warps > fewest && sharedBytes(warps) > sharedPerSm)
        {
            warps -= step;
        }

        return warps;
    }

    /// <summary>
    /// Pixels of a warp's tile of <see cref="Int8WarpPointwise"/> where asked (BATCHWISE_INT8_POINTWISE_ROWS=32; 16,
    /// <see cref="Int8WarpPointwiseTileM"/>, by default): two m16 rows multiplied by each filter fragment, the 128-channel
    /// block in two halves of 64, so 6 ldmatrix a 16 mma.sync instead of 9 — the shared memory reads that bound the
    /// 256-channel ends (session 35's Nsight Compute) — for twice a warp's shared memory (fewer warps an SM).
    /// </summary>
    public const int Int8WarpPointwiseWideTileM = 32;

    /// <summary>
    /// Blocks to launch: <paramref name="perSm"/> an SM on <paramref name="multiprocessors"/> SMs, in whole channel blocks,
    /// never more per channel block than its eight warps have pixel tiles to take.
    /// </summary>
    public static long Int8WarpPointwiseBlocks(long pixels, long outChannels, int multiprocessors, int perSm, int warps = Int8WarpPointwiseBlock / 32, int rows = Int8WarpPointwiseTileM)
    {
        var channelBlocks = Int8PointwiseChannelBlocks(outChannels);
        var tiles = (pixels + rows - 1) / rows;
        var perChannelBlock = Math.Clamp((long)perSm * multiprocessors / channelBlocks, 1, (tiles + warps - 1) / warps);
        return perChannelBlock * channelBlocks;
    }

    /// <summary>
    /// The same convolution and epilogue as <see cref="Int8Pointwise"/> (int8 channels-last x [pixels, C], filter [K, C],
    /// the requantization, ReLU and residual of <see cref="Int8ConvEpilogue"/>), written so that a warp never waits for
    /// another. A block keeps one channel block's filter rows (128 x C) and their scales and offsets in shared memory,
    /// loaded once behind the kernel's only block-wide barrier. Then each warp walks its own tiles of 16 pixels x 128
    /// channels (warp w of block b takes tile (b / channel blocks) x 8 + w, then every <c>stride</c>-th), with
    /// <paramref name="stages"/> tiles in flight through its own cp.async groups and its own shared memory: it multiplies
    /// (mma.sync m16n8k32, 16 n8 tiles of int32 sums a thread), requantizes over the residual's bytes, and stores 16 rows
    /// of 128 bytes, with <c>__syncwarp</c> between the steps. Session 27's measurements of <see cref="Int8Pointwise"/>
    /// (more tiles in flight did not help; fewer epilogue instructions did) leave each block's serial chain of three
    /// barriers a tile as the suspect: sixteen independent warps an SM instead of two blocks in lockstep.
    /// </summary>
    /// <para>
    /// With <paramref name="projection"/>, as <see cref="Int8Pointwise"/>'s: the block's projection shortcut computed in
    /// each warp's tile into its residual bytes (the warp's own), not read from memory.
    /// </para>
    /// <para>
    /// With <paramref name="warpGroups"/> (sm_90a), each four warps multiply their tiles together on warpgroup MMA
    /// (<see cref="WarpGroupProducts"/>) with the filter in shared memory as its descriptor reads it: the same sums, so the
    /// same output bytes; a warpgroup walks on while its first warp's tile is a tile (the others' copies and stores stop at
    /// the last pixel as ever). 16-pixel tiles, no projection shortcut, whole warpgroups.
    /// </para>
    public static KernelCode Int8WarpPointwise(long channels, long outChannels, long pixels, long blocks, Int8ConvEpilogue epilogue, int stages = Int8PointwiseStages, int residentBlocks = Int8PointwiseResidentBlocks, Int8PointwiseProjection? projection = null, int warps = Int8WarpPointwiseBlock / 32, int rows = Int8WarpPointwiseTileM, bool warpGroups = false)
    {
        if (!Int8PointwiseTakes(channels, outChannels) || pixels < 1 || pixels > int.MaxValue || blocks % Int8PointwiseChannelBlocks(outChannels) != 0 || stages is < 2 or > 4 || residentBlocks is < 1 or > 4 || warps is < 1 or > 32
            || rows is not (Int8WarpPointwiseTileM or Int8WarpPointwiseWideTileM) || (rows != Int8WarpPointwiseTileM && projection is not null))
        {
            throw new ArgumentException("int8 warp pointwise: 64 to 256 input channels in 32s, output channels in 64s, a block count in whole channel blocks, 2 to 4 stages, 1 to 4 resident blocks, 1 to 32 warps, tiles of 16 pixels or (without a projection shortcut) 32");
        }

        if (warpGroups && (projection is not null || rows != Int8WarpPointwiseTileM || warps % 4 != 0))
        {
            throw new ArgumentException("int8 warp pointwise on warpgroup MMA: 16-pixel tiles, no projection shortcut, whole warpgroups (warps in fours)");
        }

        if (projection is not null && (epilogue.Residual is null || !Int8PointwiseTakes(projection.Channels, outChannels) || projection.Epilogue.Residual is not null || projection.Epilogue.Silu is not null || projection.Epilogue.Relu))
        {
            throw new ArgumentException("int8 warp pointwise: a projection shortcut needs the block end's residual, 64 to 256 input channels in 32s, and no residual, SiLU or ReLU of its own");
        }

        const int BN = Int8PointwiseTileN;
        var BM = rows;
        var threads = warps * 32;
        var pb = (int)channels + 16; // bytes of a filter or input row in shared memory: an odd number of 16-byte units
        const int OP = BN + 16; // bytes of an output row in shared memory (9 units: conflict-free rows)
        var c2 = projection?.Channels ?? 0;
        var pb2 = (int)c2 + 16;
        var shared = Int8WarpPointwiseSharedBytes(channels, stages, c2, warps, rows);
        var perWarp = stages * ((BM * pb) + (BM * OP) + (projection is null ? 0 : BM * pb2)) / 2; // 16-bit units of one warp's stages
        var blockShared = (BN * pb / 2) + (2 * BN * 2) + (projection is null ? 0 : (BN * pb2 / 2) + (2 * BN * 2)); // the block's filters, scales and offsets
        var w = new KernelWriter(small: true);
        var (m, nb, tiles, stride, Within, folded, requantize) = ChannelBlockArguments(w, pixels, outChannels, blocks, warps, BM, epilogue);
        var residualLoad = epilogue.Residual is null
            ? string.Empty
            : projection is not null
            ? $$"""
                {{WarpRowLoads("x2s_ + buf * " + (BM * pb2 / 2), pb2, "x2b", c2, c2, m)}}
                """
            : $$"""
                {{WarpRowLoads("os_ + buf * " + (BM * OP / 2), OP, "rb", outChannels, BN, m, "n0 + ", Within, rows)}}
                """;
        var (projectionSetup, projectionTile) = (string.Empty, string.Empty);
        if (projection is not null)
        {
            var folded2 = w.Float("projection_folded", projection.Epilogue.Folded);
            var requantize2 = Int8Requantize(w, projection.Epilogue, "v", "0", "q[e]", "projection_");
            projectionSetup = $$"""
                    // The projection shortcut's filter block, scales and offsets (its zero points folded), once.
                    unsigned short* const fs2_ = sm_ + {{(BN * pb / 2) + (2 * BN * 2)}};      // [{{BN}}][{{pb2}} bytes] projection filter block
                    float* const so2_ = (float*)(fs2_ + {{BN * pb2 / 2}});                     // [{{BN}}] its scales, then [{{BN}}] offsets
                    unsigned short* const x2s_ = os_ + {{stages * BM * OP / 2}};                // [{{stages}}][{{BM}}][{{pb2}} bytes] this warp's shortcut input tiles
                    const signed char* const x2b = (const signed char*)x2;
            {{FilterBlockCopies("fs2_", "wt2", pb2 / 2, c2, Within, threads)}}
            {{ScaleTable("so2_", "scale2", "offset2", folded2, Within, threads)}}

            """;
            projectionTile = $$"""
                    {
                        // The shortcut's tile into the residual bytes this thread's epilogue reads below.
                        {{WarpRowProducts("x2s_ + buf * " + (BM * pb2 / 2), "fs2_", pb2 / 2, c2)}}
                        {{WarpRowRequantize("so2_", requantize2, readsResidual: false)}}
                    }

            """;
        }

        w.Body.Append(SharedHalves(shared));
        w.Body.Append($$"""
                unsigned short* const fs_ = sm_;                                  // [{{BN}}][{{pb}} bytes] filter block
                float* const so_ = (float*)(sm_ + {{BN * pb / 2}});               // [{{BN}}] scales, then [{{BN}}] offsets
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                unsigned short* const xs_ = sm_ + {{blockShared}} + warp * {{perWarp}}; // [{{stages}}][{{BM}}][{{pb}} bytes] this warp's input tiles
                unsigned short* const os_ = xs_ + {{stages * BM * pb / 2}};       // [{{stages}}][{{BM}}][{{OP}} bytes] its residual, then output tiles
                const int cb = (int)blockIdx.x % {{nb}}, n0 = cb * {{BN}};
                const signed char* const xb = (const signed char*)x;
                const signed char* const rb = (const signed char*)r;
            {{projectionSetup}}
            {{FilterBlockAndScales(pb / 2, channels, Within, folded, threads, warpGroups ? WarpGroupFilterPlace(channels) : null, asyncProxy: warpGroups)}}

                // This warp's tiles: its input rows and residual rows through its own copies, in its own stages.
                auto load = [&](int t0, int buf) {
            {{WarpRowLoads("xs_ + buf * " + (BM * pb / 2), pb, "xb", channels, channels, m, rows: rows)}}
            {{residualLoad}}
                };
                int tile = ((int)blockIdx.x / {{nb}}) * {{warps}} + warp;
            {{TilesFirstCopies(stages, stride, tiles)}}

                signed char* const yb = (signed char*)y;
            {{TilesLoop(stages, stride, tiles, loopTile: warpGroups ? "tile - (warp & 3)" : "tile")}}

                    // Requantize over the residual's bytes (each thread its own two a row), then {{BM}} rows of 128 bytes out.
                    unsigned char* const ot = (unsigned char*)(os_ + buf * {{BM * OP / 2}});
            {{projectionTile}}
            {{(warpGroups ? WarpGroupTile() : rows == Int8WarpPointwiseTileM ? WholeTile() : HalvesOfTile())}}
                    __syncwarp();
            {{WarpRowStores("yb", outChannels, "ot", OP, BN, m, "n0 + ", Within, rows)}}
                    __syncwarp();
                }
                bw_cp_async_wait<0>();

            """);
        var kernel = Int8PointwiseKernel(w, projection is not null, threads, residentBlocks, shared);
        return warpGroups ? kernel with { Source = Int8WgmmaHelper + kernel.Source } : kernel;

        // The 16-pixel tile as a quarter of its warpgroup's products, then its requantization.
        string WarpGroupTile() => $$"""
                    {
            {{WarpGroupProducts("xs_ + buf * " + (BM * pb / 2), pb / 2, channels)}}
            {{WarpRowRequantize("so_", requantize, readsResidual: epilogue.Residual is not null)}}
                    }
            """;

        // The 16-pixel tile: its products over the whole channel block, then their requantization.
        string WholeTile() => $$"""
                    {
            {{WarpRowProducts("xs_ + buf * " + (BM * pb / 2), "fs_", pb / 2, channels)}}
            {{WarpRowRequantize("so_", requantize, readsResidual: epilogue.Residual is not null)}}
                    }
            """;

        // The 32-pixel tile: two m16 rows a filter fragment, the channel block in two halves of 64 (the sums of one half in
        // registers at a time).
        string HalvesOfTile() => $$"""
                    #pragma unroll
                    for (int half = 0; half < 2; half++) {
            {{WarpTwoRowProducts("xs_ + buf * " + (BM * pb / 2), "fs_", pb / 2, channels)}}
                    #pragma unroll
                    for (int mi = 0; mi < 2; mi++) {
            {{WarpRowRequantize("so_", requantize, readsResidual: epilogue.Residual is not null, tiles: 8, sums: "acc[mi][nj]", row: "mi * 16 + ", column: "half * 64 + ")}}
                    }
                    }
            """;
    }

    /// <summary>
    /// The arguments of a persistent pointwise kernel over channel blocks (<paramref name="w"/>'s: pixels m, output
    /// channels k, channel blocks, tiles of <paramref name="tileRows"/> pixels, the stride between a worker's tiles for
    /// <paramref name="workers"/> workers a block) and its requantization's; Within bounds a channel where the output
    /// channels are not in 128s (the last channel block's upper half lies past them: zero filter rows, scales and
    /// offsets, its residual bytes not read, its output bytes not written, whole 16-byte segments).
    /// </summary>
    private static (string M, string ChannelBlocks, string Tiles, string Stride, Func<string, string> Within, string Folded, string Requantize) ChannelBlockArguments(KernelWriter w, long pixels, long outChannels, long blocks, int workers, int tileRows, Int8ConvEpilogue epilogue)
    {
        var m = w.I32("m", checked((int)pixels));
        var k = w.I32("k", checked((int)outChannels));
        var nb = w.I32("channel_blocks", checked((int)Int8PointwiseChannelBlocks(outChannels)));
        var tiles = w.I32("tiles", checked((int)((pixels + tileRows - 1) / tileRows)));
        var stride = w.I32("stride", checked((int)(blocks / Int8PointwiseChannelBlocks(outChannels) * workers)));
        var partial = outChannels % Int8PointwiseTileN != 0;
        string Within(string channel) => partial ? $" && {channel} < {k}" : string.Empty;
        var folded = w.Float("folded", epilogue.Folded);
        var requantize = Int8Requantize(w, epilogue, "v", "(signed char)(pair >> (8 * e))", "q[e]");
        return (m, nb, tiles, stride, Within, folded, requantize);
    }

    /// <summary>
    /// A persistent pointwise kernel's start: the block's filter rows (fs_, from wt; rows <paramref name="pitch"/> 16-bit
    /// units apart, or where <paramref name="place"/> puts them), scales and offsets (so_) copied once by its
    /// <paramref name="threads"/> threads, behind its only block-wide barrier; with <paramref name="asyncProxy"/> the
    /// copies made visible to the async proxy (warpgroup MMA reads the filter) before it.
    /// </summary>
    private static string FilterBlockAndScales(int pitch, long channels, Func<string, string> within, string folded, int threads, string? place = null, bool asyncProxy = false) => $$"""
                // The block's filter rows, scales and offsets, once, behind the kernel's only block-wide barrier.
            {{FilterBlockCopies("fs_", "wt", pitch, channels, within, threads, place: place)}}
                bw_cp_async_commit();
            {{ScaleTable("so_", "scale", "offset", folded, within, threads)}}
                bw_cp_async_wait<0>();{{(asyncProxy ? " bw_fence_proxy_async();" : string.Empty)}}
                __syncthreads();
        """;

    /// <summary>
    /// A warp's 32 x 64 half tile (<c>half</c>, the kernel's loop variable: channels 64 x half on) of int8 products over
    /// <paramref name="channels"/> into a fresh int acc[2][8][4]: its 32 input rows at <paramref name="rows"/> (two m16
    /// rows, each filter fragment multiplied into both) and the block's filter rows at <paramref name="filter"/>
    /// (<paramref name="pitch"/> 16-bit units apart, as <see cref="WarpRowProducts"/>).
    /// </summary>
    private static string WarpTwoRowProducts(string rows, string filter, int pitch, long channels, string half = "half") => $$"""
                    int acc[2][8][4];
                    #pragma unroll
                    for (int mi = 0; mi < 2; mi++) {
                        #pragma unroll
                        for (int nj = 0; nj < 8; nj++) { acc[mi][nj][0] = 0; acc[mi][nj][1] = 0; acc[mi][nj][2] = 0; acc[mi][nj][3] = 0; }
                    }
                    {
                        const unsigned short* const at = {{rows}};
                        const int aoff = (lane & 15) * {{pitch}} + (lane >> 4) * 8;
                        const int boff = ((lane >> 4) * 8 + (lane & 7)) * {{pitch}} + ((lane >> 3) & 1) * 8 + {{half}} * {{64 * pitch}};
                        #pragma unroll
                        for (int ks = 0; ks < {{channels / 32}}; ks++) {
                            unsigned a0[4], a1[4];
                            bw_ldsm_x4(a0, at + aoff + ks * 16);
                            bw_ldsm_x4(a1, at + aoff + {{16 * pitch}} + ks * 16);
                            #pragma unroll
                            for (int np = 0; np < 4; np++) {
                                unsigned f[4];
                                bw_ldsm_x4(f, {{filter}} + boff + np * {{16 * pitch}} + ks * 16);
                                bw_mma_16832_s8(acc[0][2 * np], a0, f[0], f[1]);
                                bw_mma_16832_s8(acc[0][2 * np + 1], a0, f[2], f[3]);
                                bw_mma_16832_s8(acc[1][2 * np], a1, f[0], f[1]);
                                bw_mma_16832_s8(acc[1][2 * np + 1], a1, f[2], f[3]);
                            }
                        }
                    }
        """;

    /// <summary>
    /// A warp's 16 x 128 tile of int8 products over <paramref name="channels"/> (k32 steps) into a fresh int acc[16][4]:
    /// its 16 input rows at <paramref name="rows"/> and the block's 128 filter rows at <paramref name="filter"/> (ldmatrix,
    /// rows <paramref name="pitch"/> 16-bit units apart, the filter's <paramref name="filterPitch"/> where not 0; the lane
    /// offsets aoff and boff are the kernel's). <paramref name="tiles"/> n8 tiles (an even number) for fewer than 128
    /// columns.
    /// </summary>
    private static string WarpRowProducts(string rows, string filter, int pitch, long channels, int filterPitch = 0, int tiles = 16) => $$"""
                    int acc[{{tiles}}][4];
                    #pragma unroll
                    for (int nj = 0; nj < {{tiles}}; nj++) { acc[nj][0] = 0; acc[nj][1] = 0; acc[nj][2] = 0; acc[nj][3] = 0; }
                    {
                        const unsigned short* const at = {{rows}};
                        const int aoff = (lane & 15) * {{pitch}} + (lane >> 4) * 8;
                        const int boff = ((lane >> 4) * 8 + (lane & 7)) * {{(filterPitch == 0 ? pitch : filterPitch)}} + ((lane >> 3) & 1) * 8;
                        #pragma unroll
                        for (int ks = 0; ks < {{channels / 32}}; ks++) {
                            unsigned af[4];
                            bw_ldsm_x4(af, at + aoff + ks * 16);
                            #pragma unroll
                            for (int np = 0; np < {{tiles / 2}}; np++) {
                                unsigned f[4];
                                bw_ldsm_x4(f, {{filter}} + boff + np * 16 * {{(filterPitch == 0 ? pitch : filterPitch)}} + ks * 16);
                                bw_mma_16832_s8(acc[2 * np], af, f[0], f[1]);
                                bw_mma_16832_s8(acc[2 * np + 1], af, f[2], f[3]);
                            }
                        }
                    }
        """;

    /// <summary>
    /// acc[16][4] requantized (<paramref name="requantize"/>'s statements, the scales and offsets at
    /// <paramref name="scales"/>) into the warp's output tile <paramref name="tile"/> (rows <paramref name="pitch"/> bytes
    /// apart), each thread its own two bytes a row, after reading the residual's two bytes there where
    /// <paramref name="readsResidual"/>; <paramref name="tiles"/> n8 tiles of acc.
    /// </summary>
    private static string WarpRowRequantize(string scales, string requantize, bool readsResidual, string tile = "ot", int pitch = Int8PointwiseTileN + 16, int tiles = 16, string sums = "acc[nj]", string row = "", string column = "", string? tileColumn = null) => $$"""
                    #pragma unroll
                    for (int nj = 0; nj < {{tiles}}; nj++) {
                        const float2 s2 = *(const float2*)({{scales}} + {{column}}nj * 8 + 2 * t), o2 = *(const float2*)({{scales}} + {{Int8PointwiseTileN}} + {{column}}nj * 8 + 2 * t);
                        const float sc[2] = {s2.x, s2.y}, of[2] = {o2.x, o2.y};
                        #pragma unroll
                        for (int h = 0; h < 2; h++) {
                            unsigned short* const at2 = (unsigned short*)({{tile}} + ({{row}}g + 8 * h) * {{pitch}} + {{tileColumn ?? column}}nj * 8 + 2 * t);
                            {{(readsResidual ? "const unsigned pair = *at2;" : string.Empty)}}
                            unsigned q[2];
                            #pragma unroll
                            for (int e = 0; e < 2; e++) {
                                float v = (float){{sums}}[2 * h + e] * sc[e] + of[e];
                                {{requantize}}
                            }
                            *at2 = (unsigned short)__byte_perm(q[0], q[1], 0x0040);
                        }
                    }
        """;

    /// <summary>
    /// A warp's or a block's pipeline over its tiles (tile, then every <paramref name="stride"/>-th below
    /// <paramref name="tiles"/>, copied by the kernel's <c>load(tile, stage)</c>): the first <paramref name="stages"/> - 1
    /// tiles' copies, each its own cp.async group.
    /// </summary>
    private static string TilesFirstCopies(int stages, string stride, string tiles) => $$"""
                    #pragma unroll
                    for (int s = 0; s < {{stages - 1}}; s++) {
                        if (tile + s * {{stride}} < {{tiles}}) load(tile + s * {{stride}}, s);
                        bw_cp_async_commit();
                    }
        """;

    /// <summary>
    /// The head of the loop over a warp's or a block's tiles after <see cref="TilesFirstCopies"/>: each time the copies of
    /// the tile <paramref name="stages"/> - 1 ahead started (after <paramref name="beforeCopies"/>, where given: a barrier
    /// that the stage those copies overwrite has been read), this tile's awaited and <paramref name="barrier"/> passed,
    /// <c>buf</c> its stage (the caller's body and closing brace follow); it goes on while <paramref name="loopTile"/> (an
    /// expression of <c>tile</c>: a warpgroup's first tile) is a tile.
    /// </summary>
    private static string TilesLoop(int stages, string stride, string tiles, string barrier = "__syncwarp()", string? beforeCopies = null, string loopTile = "tile") => $$"""
                    for (int it = 0; {{loopTile}} < {{tiles}}; tile += {{stride}}, it++) {
                        const int buf = it % {{stages}};{{(beforeCopies is null ? string.Empty : $"\n                        {beforeCopies};")}}
                        if (tile + {{stages - 1}} * {{stride}} < {{tiles}}) load(tile + {{stages - 1}} * {{stride}}, (it + {{stages - 1}}) % {{stages}});
                        bw_cp_async_commit();
                        bw_cp_async_wait<{{stages - 1}}>();
                        {{barrier}};
        """;

    /// <summary>
    /// A warp's cp.async copies of one tile's 16 rows (t0 x 16 on, in the kernel's <c>load</c>) of <paramref name="source"/>
    /// (int8 rows of <paramref name="rowBytes"/>, <paramref name="columns"/> bytes from byte <paramref name="column"/>, an
    /// expression ending in " + " or empty) into <paramref name="target"/> (rows <paramref name="pitch"/> bytes apart);
    /// rows past <paramref name="m"/> and 16-byte segments past <paramref name="within"/>'s bound zero-filled.
    /// </summary>
    private static string WarpRowLoads(string target, int pitch, string source, long rowBytes, long columns, string m, string column = "", Func<string, string>? within = null, int rows = Int8WarpPointwiseTileM, string first = "lane", int step = 32) => $$"""
                        for (int i = {{first}}; i < {{rows * columns / 16}}; i += {{step}}) {
                            const int row = i / {{columns / 16}}, seg = i - row * {{columns / 16}}, p = t0 * {{rows}} + row;
                            const bool in = p < {{m}}{{within?.Invoke(column + "seg * 16")}};
                            bw_cp_async16({{target}} + row * {{pitch / 2}} + seg * 8, (const unsigned short*)({{source}} + (in ? (i64)p * {{rowBytes}} + {{column}}seg * 16 : 0)), in);
                        }
        """;

    /// <summary>
    /// A warp's stores of this tile's 16 rows (<c>tile</c> x 16 on) from <paramref name="from"/> (rows
    /// <paramref name="pitch"/> bytes apart) into <paramref name="target"/> (int8 rows of <paramref name="rowBytes"/>,
    /// <paramref name="columns"/> bytes from byte <paramref name="column"/>, as <see cref="WarpRowLoads"/>), 16 bytes a
    /// lane a step; rows past <paramref name="m"/> and segments past <paramref name="within"/>'s bound not written.
    /// </summary>
    private static string WarpRowStores(string target, long rowBytes, string from, int pitch, long columns, string m, string column = "", Func<string, string>? within = null, int rows = Int8WarpPointwiseTileM) => $$"""
                    for (int i = lane; i < {{rows * columns / 16}}; i += 32) {
                        const int row = i / {{columns / 16}}, seg = i - row * {{columns / 16}}, p = tile * {{rows}} + row;
                        if (p < {{m}}{{within?.Invoke(column + "seg * 16")}}) *(uint4*)({{target}} + (i64)p * {{rowBytes}} + {{column}}seg * 16) = *(const uint4*)({{from}} + row * {{pitch}} + seg * 16);
                    }
        """;
}
