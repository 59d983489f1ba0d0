namespace Batchwise.Cuda.Kernels;

/// <summary>
/// A residual block's int8 1x1 end and the next block's 1x1 reduction in one kernel: the reduction reads the block end's
/// output from shared memory, not from memory again.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Warps a block of <see cref="Int8ChainPointwise"/> has at most (one block an SM, 128 registers a thread).</summary>
    public const int Int8ChainPointwiseMostWarps = 16;

    /// <summary>
    /// Warps a block of <see cref="Int8ChainPointwise"/> needs at least where the planner chains by default
    /// (BATCHWISE_INT8_CHAIN=on): measured per layer on an H100 (session 34, ResNet-50 int8 at b=256), the 56x56 end
    /// with sixteen warps and a 64-channel reduction ran 0.216 ms against 0.185 + 0.100 apart, but twelve warps with the
    /// projection shortcut inside 0.304 against 0.184 + 0.102, and thirteen with a 128-channel reduction 0.304 against
    /// 0.184 + 0.120: the chain's extra products need a full SM of warps.
    /// </summary>
    public const int Int8ChainPointwiseLeastWarps = 16;

    /// <summary>Warps a block of <see cref="Int8ChainPointwise"/> needs at least in any case (BATCHWISE_INT8_CHAIN=any, to measure): fewer cannot keep an SM's four schedulers busy.</summary>
    public const int Int8ChainPointwiseFewestWarps = 8;

    /// <summary>
    /// Channel counts the chained kernel takes: the block end's as <see cref="Int8PointwiseTakes"/> with output channels in
    /// 128s up to 512 (its whole filter in shared memory), the reduction's outputs 64 or 128.
    /// </summary>
    public static bool Int8ChainPointwiseTakes(long channels, long outChannels, long chainChannels) =>
        Int8PointwiseTakes(channels, outChannels) && outChannels % Int8PointwiseTileN == 0 && outChannels <= 512 && chainChannels is 64 or 128;

    /// <summary>
    /// Shared memory of one block of <see cref="Int8ChainPointwise"/> with <paramref name="warps"/> warps (bytes): the block
    /// end's whole filter [K][C + 16] and a table of scales and offsets a 128 channels (1 KB), the reduction's filter
    /// [K2][K + 16] and table, the projection shortcut's filter and tables where one is computed in it; and for each
    /// warp <paramref name="stages"/> input tiles [16][max(C, K2) + 16] (the reduction's output tile too), residual-then-
    /// output tiles [16][K + 16] and the shortcut's input tiles [16][C2 + 16].
    /// </summary>
    public static int Int8ChainPointwiseSharedBytes(long channels, long outChannels, long chainChannels, int stages, int warps, long projectionChannels = 0)
    {
        var chunks = outChannels / Int8PointwiseTileN;
        var block = (outChannels * (channels + 16)) + (chunks * 1024) + (chainChannels * (outChannels + 16)) + 1024
            + (projectionChannels == 0 ? 0 : (outChannels * (projectionChannels + 16)) + (chunks * 1024));
        var perWarp = stages * ((Int8WarpPointwiseTileM * (Math.Max(channels, chainChannels) + 16)) + (Int8WarpPointwiseTileM * (outChannels + 16))
            + (projectionChannels == 0 ? 0 : Int8WarpPointwiseTileM * (projectionChannels + 16)));
        return checked((int)(block + (warps * perWarp)));
    }

    /// <summary>
    /// The warps a block of <see cref="Int8ChainPointwise"/> takes within <paramref name="sharedPerBlock"/> bytes (at most
    /// <see cref="Int8ChainPointwiseMostWarps"/>), or 0 where fewer than <paramref name="least"/> fit.
    /// </summary>
    public static int Int8ChainPointwiseWarps(long channels, long outChannels, long chainChannels, int stages, int sharedPerBlock, long projectionChannels = 0, int least = Int8ChainPointwiseLeastWarps)
    {
        for (var warps = Int8ChainPointwiseMostWarps; warps >= Math.Max(least, 1); warps--)
        {
            if (Int8ChainPointwiseSharedBytes(channels, outChannels, chainChannels, stages, warps, projectionChannels) <= sharedPerBlock)
            {
                return warps;
            }
        }

        return 0;
    }

    /// <summary>Blocks to launch: one an SM on <paramref name="multiprocessors"/> SMs, never more than the warps have pixel tiles to take.</summary>
    public static long Int8ChainPointwiseBlocks(long pixels, int warps, int multiprocessors)
    {
        var tiles = (pixels + Int8WarpPointwiseTileM - 1) / Int8WarpPointwiseTileM;
        return Math.Clamp((tiles + warps - 1) / warps, 1, multiprocessors);
    }

    /// <summary>
    /// <see cref="Int8WarpPointwise"/>'s residual block end (int8 channels-last x [pixels, C], its whole filter [K, C],
    /// the requantization, the residual's Add and ReLU of <paramref name="epilogue"/>) and then, on the same 16 pixels,
    /// the next block's 1x1 reduction of its output (filter [K2, K], <paramref name="chainEpilogue"/>: its requantization
    /// and ReLU): y [pixels, K] and z [pixels, K2] out. ResNet's block ends write y for the next block's residual and its
    /// first convolution reads all of y back (256 of the 320 bytes a pixel that ResNet-50's 56x56 reductions move); here
    /// the reduction reads it from the warp's shared-memory tile it was just requantized into.
    /// <para>
    /// One block an SM with the two filters, their scales and offsets in shared memory, loaded once behind the only
    /// block-wide barrier; then each warp walks its own tiles of 16 pixels (warp w of block b takes tile b x warps + w,
    /// then every blocks x warps-th), <paramref name="stages"/> in flight through its own cp.async groups: the block
    /// end's products a 128 channels at a time (mma.sync m16n8k32) requantized over the residual's bytes, the 16 rows of
    /// y stored, then the reduction's products over those bytes (k32 steps over K), requantized into the input tile's
    /// place, and the 16 rows of z stored. With <paramref name="projection"/>, as <see cref="Int8WarpPointwise"/>'s.
    /// </para>
    /// </summary>
    public static KernelCode Int8ChainPointwise(long channels, long outChannels, long chainChannels, long pixels, long blocks, int warps, Int8ConvEpilogue epilogue, Int8ConvEpilogue chainEpilogue, int stages = Int8PointwiseStages, Int8PointwiseProjection? projection = null)
    {
        if (!Int8ChainPointwiseTakes(channels, outChannels, chainChannels) || pixels < 1 || pixels > int.MaxValue || blocks < 1 || stages is < 2 or > 4 || warps is < 1 or > Int8ChainPointwiseMostWarps
            || epilogue.Residual is null || chainEpilogue.Residual is not null || chainEpilogue.Silu is not null)
        {
            throw new ArgumentException("int8 chained pointwise: 64 to 256 input channels in 32s, 128 to 512 output channels in 128s, a reduction to 64 or 128 channels without a residual or SiLU of its own after a block end with one, 2 to 4 stages, 1 to 16 warps");
        }

        if (projection is not null && (!Int8PointwiseTakes(projection.Channels, outChannels) || projection.Epilogue.Residual is not null || projection.Epilogue.Silu is not null || projection.Epilogue.Relu))
        {
            throw new ArgumentException("int8 chained pointwise: a projection shortcut needs 64 to 256 input channels in 32s and no residual, SiLU or ReLU of its own");
        }

        const int BM = Int8WarpPointwiseTileM, BN = Int8PointwiseTileN;
        var (c, k, k2) = ((int)channels, (int)outChannels, (int)chainChannels);
        var chunks = k / BN;
        var pb = c + 16; // bytes of a filter or input row in shared memory: an odd number of 16-byte units
        var op = k + 16; // bytes of a residual/output row and of a reduction filter row (odd units too)
        var zp = k2 + 16; // bytes of a reduction output row
        var xp = Math.Max(pb, zp); // bytes a row of a warp's input tile takes (its reduction output tile lies there too)
        var c2 = (int)(projection?.Channels ?? 0);
        var pb2 = c2 + 16;
        var threads = warps * 32;
        var shared = Int8ChainPointwiseSharedBytes(channels, outChannels, chainChannels, stages, warps, c2);
        var perWarp = stages * ((BM * xp) + (BM * op) + (projection is null ? 0 : BM * pb2)) / 2; // 16-bit units
        var blockShared = ((k * pb) + (chunks * 1024) + (k2 * op) + 1024 + (projection is null ? 0 : (k * pb2) + (chunks * 1024))) / 2;
        var w = new KernelWriter(small: true);
        var m = w.I32("m", checked((int)pixels));
        var tiles = w.I32("tiles", checked((int)((pixels + BM - 1) / BM)));
        var stride = w.I32("stride", checked((int)(blocks * warps)));
        var folded = w.Float("folded", epilogue.Folded);
        var chainFolded = w.Float("chain_folded", chainEpilogue.Folded);
        var requantize = Int8Requantize(w, epilogue, "v", "(signed char)(pair >> (8 * e))", "q[e]");
        var chainRequantize = Int8Requantize(w, chainEpilogue, "v", "0", "q[e]", "chain_");
        Func<string, string> noLimit = _ => string.Empty;
        string Chunks(string body) => $$"""
                    for (int j = 0; j < {{chunks}}; j++) {
                        const int n0 = j * {{BN}};
                {{body}}
                    }
            """;

        var (projectionSetup, projectionTile, residualLoad) = (string.Empty, string.Empty, string.Empty);
        if (projection is not null)
        {
            var folded2 = w.Float("projection_folded", projection.Epilogue.Folded);
            var requantize2 = Int8Requantize(w, projection.Epilogue, "v", "0", "q[e]", "projection_");
            projectionSetup = $$"""
                    unsigned short* const fs2_ = (unsigned short*)(szf_ + 256);              // [{{k}}][{{pb2}} bytes] projection filter
                    float* const so2_ = (float*)(fs2_ + {{k * pb2 / 2}});                     // [{{chunks}}][256] its scales and offsets
                    unsigned short* const x2s_ = os_ + {{stages * BM * op / 2}};               // [{{stages}}][{{BM}}][{{pb2}} bytes] this warp's shortcut input tiles
                    const signed char* const x2b = (const signed char*)x2;
            {{Chunks(FilterBlockCopies("fs2_ + j * " + (BN * pb2 / 2), "wt2", pb2 / 2, c2, noLimit, threads) + ScaleTable("(so2_ + j * 256)", "scale2", "offset2", folded2, noLimit, threads))}}
            """;
            projectionTile = $$"""
                        {
                {{WarpRowProducts("x2s_ + buf * " + (BM * pb2 / 2), "fs2_ + j * " + (BN * pb2 / 2), pb2 / 2, c2)}}
                {{WarpRowRequantize("so2_ + j * 256", requantize2, readsResidual: false, tile: "ot + n0", pitch: op)}}
                        }
            """;
            residualLoad = $$"""
                {{WarpRowLoads("x2s_ + buf * " + (BM * pb2 / 2), pb2, "x2b", c2, c2, m)}}
                """;
        }
        else
        {
            residualLoad = $$"""
                {{WarpRowLoads("os_ + buf * " + (BM * op / 2), op, "rb", k, k, m)}}
                """;
        }

        w.Body.Append(SharedHalves(shared));
        w.Body.Append($$"""
                unsigned short* const fs_ = sm_;                                  // [{{k}}][{{pb}} bytes] the block end's filter
                float* const so_ = (float*)(sm_ + {{k * pb / 2}});                // [{{chunks}}][256] its scales and offsets a 128 channels
                unsigned short* const fz_ = (unsigned short*)(so_ + {{chunks * 256}}); // [{{k2}}][{{op}} bytes] the reduction's filter
                float* const szf_ = (float*)(fz_ + {{k2 * op / 2}});              // [256] its scales and offsets
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                unsigned short* const xs_ = sm_ + {{blockShared}} + warp * {{perWarp}}; // [{{stages}}][{{BM}}][{{xp}} bytes] this warp's input tiles, then its reduction outputs
                unsigned short* const os_ = xs_ + {{stages * BM * xp / 2}};       // [{{stages}}][{{BM}}][{{op}} bytes] its residual, then output tiles
                const signed char* const xb = (const signed char*)x;
                const signed char* const rb = (const signed char*)r;
            {{projectionSetup}}
                // Both filters, their scales and offsets, once, behind the kernel's only block-wide barrier.
            {{Chunks(FilterBlockCopies("fs_ + j * " + (BN * pb / 2), "wt", pb / 2, c, noLimit, threads) + ScaleTable("(so_ + j * 256)", "scale", "offset", folded, noLimit, threads))}}
                {
                    const int n0 = 0;
            {{FilterBlockCopies("fz_", "wt3", op / 2, k, noLimit, threads, k2)}}
                    bw_cp_async_commit();
            {{ScaleTable("szf_", "scale3", "offset3", chainFolded, n => $" && {n} < {k2}", threads)}}
                }
                bw_cp_async_wait<0>();
                __syncthreads();

                auto load = [&](int t0, int buf) {
            {{WarpRowLoads("xs_ + buf * " + (BM * xp / 2), xp, "xb", c, c, m)}}
            {{residualLoad}}
                };
                int tile = (int)blockIdx.x * {{warps}} + warp;
            {{TilesFirstCopies(stages, stride, tiles)}}

                signed char* const yb = (signed char*)y;
                signed char* const zb = (signed char*)z;
            {{TilesLoop(stages, stride, tiles)}}

                    // The block end a 128 channels at a time, requantized over the residual's bytes (each thread its own).
                    unsigned char* const ot = (unsigned char*)(os_ + buf * {{BM * op / 2}});
                    #pragma unroll 1
                    for (int j = 0; j < {{chunks}}; j++) {
                        const int n0 = j * {{BN}};
            {{projectionTile}}
                        {
            {{WarpRowProducts("xs_ + buf * " + (BM * xp / 2), "fs_ + j * " + (BN * pb / 2), xp / 2, c, pb / 2)}}
            {{WarpRowRequantize("so_ + j * 256", requantize, readsResidual: true, tile: "ot + n0", pitch: op)}}
                        }
                    }
                    __syncwarp();
            {{WarpRowStores("yb", k, "ot", op, k, m)}}

                    // The reduction over the tile just written, into the input tile's place.
                    unsigned char* const zt = (unsigned char*)(xs_ + buf * {{BM * xp / 2}});
                    {
            {{WarpRowProducts("(const unsigned short*)ot", "fz_", op / 2, k, tiles: k2 / 8)}}
            {{WarpRowRequantize("szf_", chainRequantize, readsResidual: false, tile: "zt", pitch: zp, tiles: k2 / 8)}}
                    }
                    __syncwarp();
            {{WarpRowStores("zb", k2, "zt", zp, k2, m)}}
                    __syncwarp();
                }
                bw_cp_async_wait<0>();

            """);
        return Int8PointwiseKernel(w, projection is not null, threads, 1, shared, "signed char* __restrict__ z, const signed char* __restrict__ wt3, const float* __restrict__ scale3, const float* __restrict__ offset3");
    }
}
