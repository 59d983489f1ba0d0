namespace Batchwise.Cuda.Kernels;

/// <summary>
/// The int8 1x1 convolution of <see cref="KernelSource.Int8WarpPointwise"/> with warps in pairs: the two warps of a pair
/// share a 32-pixel input tile, each multiplies it by one half (64 channels) of the block's filter.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Bytes of a row of a warp's half output tile in <see cref="Int8PairPointwise"/>: 64 channels and 16 of padding (five 16-byte units: conflict-free rows).</summary>
    private const int PairOutputPitch = (Int8PointwiseTileN / 2) + 16;

    /// <summary>
    /// Shared memory of one block of <see cref="Int8PairPointwise"/>: the filter block [128][C + 16], its scales and offsets
    /// (1 KB), for each pair of its <paramref name="warps"/> warps <paramref name="stages"/> input tiles [32][C + 16], and
    /// for each warp as many residual-then-output half tiles [32][80] (bytes): about what 16-pixel tiles take a warp.
    /// </summary>
    public static int Int8PairPointwiseSharedBytes(long channels, int stages, int warps) =>
        checked((int)((Int8PointwiseTileN * (channels + 16)) + (2 * Int8PointwiseTileN * 4) + ((warps / 2) * stages * Int8WarpPointwiseWideTileM * (channels + 16)) + (warps * stages * Int8WarpPointwiseWideTileM * PairOutputPitch)));

    /// <summary>
    /// Warps a block of <see cref="Int8PairPointwise"/>, an even number: eight where two blocks of eight fit an SM, else as
    /// many as fit <paramref name="sharedPerSm"/> up to <paramref name="most"/> (at least eight).
    /// </summary>
    public static int Int8PairPointwiseWarps(long channels, int stages, int sharedPerSm, int most) =>
        WarpsThatFit(warps => Int8PairPointwiseSharedBytes(channels, stages, warps), sharedPerSm, most, keepEight: true, step: 2);

    /// <summary>Blocks to launch <see cref="Int8PairPointwise"/> with: as <see cref="Int8WarpPointwiseBlocks"/>, a pair taking a 32-pixel tile.</summary>
    public static long Int8PairPointwiseBlocks(long pixels, long outChannels, int multiprocessors, int perSm, int warps) =>
        Int8WarpPointwiseBlocks(pixels, outChannels, multiprocessors, perSm, warps / 2, Int8WarpPointwiseWideTileM);

    /// <summary>
    /// The convolution and epilogue of <see cref="Int8WarpPointwise"/> (no projection shortcut) with each filter fragment
    /// multiplied into two m16 rows and as many warps as 16-pixel tiles allow: the two warps of a pair copy a 32-pixel
    /// input tile together (each every other 16-byte segment) into the pair's stage and meet at a 64-thread named barrier
    /// (bar.sync, one a pair) before multiplying it and before overwriting a stage; warp w of the pair multiplies it by
    /// channels 64 w..64 w + 63 of the block's filter (acc[2][8][4], the same 64 sums a thread as a 16-pixel tile's),
    /// requantizes over its own half of the residual's bytes (copied by it alone into its own half tile) and stores its
    /// 32 rows of 64 bytes. 6 ldmatrix a 16 mma.sync, as <see cref="Int8WarpPointwiseWideTileM"/>'s 32-pixel tiles, at
    /// the shared memory a warp of 16-pixel tiles takes.
    /// </summary>
    public static KernelCode Int8PairPointwise(long channels, long outChannels, long pixels, long blocks, Int8ConvEpilogue epilogue, int warps, int stages = Int8PointwiseStages, int residentBlocks = Int8PointwiseResidentBlocks)
    {
        if (!Int8PointwiseTakes(channels, outChannels) || pixels < 1 || pixels > int.MaxValue || blocks % Int8PointwiseChannelBlocks(outChannels) != 0 || stages is < 2 or > 4 || residentBlocks is < 1 or > 4
            || warps is < 2 or > 30 || warps % 2 != 0)
        {
            throw new ArgumentException("int8 pair pointwise: 64 to 256 input channels in 32s, output channels in 64s, a block count in whole channel blocks, 2 to 4 stages, 1 to 4 resident blocks, an even number of warps from 2 to 30 (a named barrier a pair)");
        }

        const int BM = Int8WarpPointwiseWideTileM, BN = Int8PointwiseTileN, OP = PairOutputPitch;
        var threads = warps * 32;
        var pairs = warps / 2;
        var pb = (int)channels + 16; // bytes of a filter or input row in shared memory: an odd number of 16-byte units
        var shared = Int8PairPointwiseSharedBytes(channels, stages, warps);
        var perPair = stages * BM * pb / 2; // 16-bit units of a pair's input stages
        var perWarp = stages * BM * OP / 2; // 16-bit units of a warp's half tiles
        var blockShared = (BN * pb / 2) + (2 * BN * 2); // the block's filter, scales and offsets
        var w = new KernelWriter(small: true);
        var (m, nb, tiles, stride, Within, folded, requantize) = ChannelBlockArguments(w, pixels, outChannels, blocks, pairs, BM, epilogue);
        var residualLoad = epilogue.Residual is null ? string.Empty : WarpRowLoads("os_ + buf * " + (BM * OP / 2), OP, "rb", outChannels, BN / 2, m, "n0 + side * 64 + ", Within, BM);
        w.Body.Append(SharedHalves(shared));
        w.Body.Append($$"""
                unsigned short* const fs_ = sm_;                                  // [{{BN}}][{{pb}} bytes] filter block
                float* const so_ = (float*)(sm_ + {{BN * pb / 2}});               // [{{BN}}] scales, then [{{BN}}] offsets
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                const int pair = warp >> 1, side = warp & 1;
                unsigned short* const xs_ = sm_ + {{blockShared}} + pair * {{perPair}};              // [{{stages}}][{{BM}}][{{pb}} bytes] the pair's input tiles
                unsigned short* const os_ = sm_ + {{blockShared + (pairs * perPair)}} + warp * {{perWarp}}; // [{{stages}}][{{BM}}][{{OP}} bytes] this warp's residual, then output half tiles
                const int cb = (int)blockIdx.x % {{nb}}, n0 = cb * {{BN}};
                const signed char* const xb = (const signed char*)x;
                const signed char* const rb = (const signed char*)r;
            {{FilterBlockAndScales(pb / 2, channels, Within, folded, threads)}}

                // The pair's input rows (this warp every other 16-byte segment) and this warp's half of the residual rows.
                auto load = [&](int t0, int buf) {
            {{WarpRowLoads("xs_ + buf * " + (BM * pb / 2), pb, "xb", channels, channels, m, rows: BM, first: "lane + side * 32", step: 64)}}
            {{residualLoad}}
                };
                int tile = ((int)blockIdx.x / {{nb}}) * {{pairs}} + pair;
            {{TilesFirstCopies(stages, stride, tiles)}}

                signed char* const yb = (signed char*)y;
                // The pair's barrier before the copies (the partner has multiplied the stage they overwrite) and after
                // the wait (both warps' copies of this tile have landed).
            {{TilesLoop(stages, stride, tiles, barrier: "bw_pair_sync(pair)", beforeCopies: "bw_pair_sync(pair)")}}

                    // This warp's half of the channel block over the pair's 32 rows, requantized over its residual bytes,
                    // then 32 rows of 64 bytes out.
                    unsigned char* const ot = (unsigned char*)(os_ + buf * {{BM * OP / 2}});
            {{WarpTwoRowProducts("xs_ + buf * " + (BM * pb / 2), "fs_", pb / 2, channels, "side")}}
                    #pragma unroll
                    for (int mi = 0; mi < 2; mi++) {
            {{WarpRowRequantize("so_", requantize, readsResidual: epilogue.Residual is not null, pitch: OP, tiles: 8, sums: "acc[mi][nj]", row: "mi * 16 + ", column: "side * 64 + ", tileColumn: string.Empty)}}
                    }
                    __syncwarp();
            {{WarpRowStores("yb", outChannels, "ot", OP, BN / 2, m, "n0 + side * 64 + ", Within, BM)}}
                    __syncwarp();
                }
                bw_cp_async_wait<0>();

            """);
        var code = Int8PointwiseKernel(w, false, threads, residentBlocks, shared);
        return code with { Source = PairSyncHelper + code.Source };
    }

    /// <summary>A pair of warps' named barrier (bar.sync with 64 threads, ids 1 to 15; 0 is __syncthreads'); the CPU test runner defines its own.</summary>
    private const string PairSyncHelper = """
        #ifndef BW_PAIR_HELPERS
        #define BW_PAIR_HELPERS
        __device__ __forceinline__ void bw_pair_sync(int pair) { asm volatile("bar.sync %0, 64;" :: "r"(pair + 1) : "memory"); }
        #endif

        """;
}
