namespace Batchwise.Cuda.Kernels;

/// <summary>
/// An int8 1x1 convolution (unstrided, unpadded: a GEMM over pixels) as a persistent, memory-streaming kernel: ResNet's
/// block ends (64 -> 256 channels at 56x56 and the like, with the residual) move far more bytes than they compute, and
/// cuDNN's fused graphs run them at 1.4-1.6 TB/s on an H200 (session 26), fp16's at ~4.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="Int8Pointwise"/>: eight warps, a 2 x 4 grid of 32 x 32 warp tiles.</summary>
    public const int Int8PointwiseBlock = 256;

    /// <summary>Output pixels of one tile of <see cref="Int8Pointwise"/>.</summary>
    public const int Int8PointwiseTileM = 64;

    /// <summary>Output channels of one tile of <see cref="Int8Pointwise"/> (a block's channel block, for all its pixel tiles).</summary>
    public const int Int8PointwiseTileN = 128;

    /// <summary>
    /// Channel counts the kernel takes: input channels 64 to 256 in 32s (held whole in shared memory, a k32 step each 32;
    /// a row of C + 16 bytes is an odd number of 16-byte units, so ldmatrix rows meet no bank conflict), output channels
    /// in 64s (the last channel block half empty where they are not in 128s: a MobileNet's 96 -> 576 and 160 -> 960).
    /// </summary>
    public static bool Int8PointwiseTakes(long channels, long outChannels) =>
        channels % 32 == 0 && channels is >= 64 and <= 256 && outChannels % 64 == 0 && outChannels is > 0 and <= int.MaxValue;

    /// <summary>Channel blocks of <see cref="Int8PointwiseTileN"/> output channels (the last one partial where they are not in 128s).</summary>
    public static long Int8PointwiseChannelBlocks(long outChannels) => (outChannels + Int8PointwiseTileN - 1) / Int8PointwiseTileN;

    /// <summary>Tiles in flight a block by default: two (one multiplied while the next arrives), as measured (session 26).</summary>
    public const int Int8PointwiseStages = 2;

    /// <summary>Shared memory of one block: the filter block [128][C + 16], and a stage's input tile [64][C + 16] and output tile [64][144] for each stage (bytes).</summary>
    public static int Int8PointwiseSharedBytes(long channels, int stages = Int8PointwiseStages) =>
        checked((int)((Int8PointwiseTileN * (channels + 16)) + (stages * ((Int8PointwiseTileM * (channels + 16)) + (Int8PointwiseTileM * (Int8PointwiseTileN + 16))))));

    /// <summary>
    /// Shared memory of one block with a projection shortcut of <paramref name="projectionChannels"/> input channels
    /// computed in it (<see cref="Int8PointwiseProjection"/>): <see cref="Int8PointwiseSharedBytes(long, int)"/> plus the projection's
    /// filter block [128][C2 + 16], its scales and offsets (1 KB) and a stage's projection input tile [64][C2 + 16] each stage.
    /// </summary>
    public static int Int8PointwiseSharedBytes(long channels, int stages, long projectionChannels) =>
        checked(Int8PointwiseSharedBytes(channels, stages) + (int)((Int8PointwiseTileN * (projectionChannels + 16)) + (2 * Int8PointwiseTileN * 4) + (stages * Int8PointwiseTileM * (projectionChannels + 16))));

    /// <summary>Resident blocks an SM <see cref="Int8Pointwise"/> is built for by default (its launch bounds: 128 registers a thread).</summary>
    public const int Int8PointwiseResidentBlocks = 2;

    /// <summary>
    /// Blocks of <see cref="Int8Pointwise"/> resident on an SM: <paramref name="most"/> (its launch bounds) where that many
    /// blocks' shared memory fits in <paramref name="sharedPerSm"/> bytes (1 KB reserved a block), else as many as fit, at
    /// least one.
    /// </summary>
    public static int Int8PointwiseBlocksPerSm(long channels, int stages, int sharedPerSm, int most = Int8PointwiseResidentBlocks, long projectionChannels = 0) =>
        ResidentBlocks(projectionChannels == 0 ? Int8PointwiseSharedBytes(channels, stages) : Int8PointwiseSharedBytes(channels, stages, projectionChannels), sharedPerSm, most);

    /// <summary>Blocks of <paramref name="sharedBytes"/> each that fit in <paramref name="sharedPerSm"/> (1 KB reserved a block), from 1 to <paramref name="most"/>.</summary>
    public static int ResidentBlocks(int sharedBytes, int sharedPerSm, int most) => Math.Clamp((sharedPerSm + 1024) / (sharedBytes + 1024), 1, most);

    /// <summary>
    /// Blocks to launch: <paramref name="perSm"/> an SM on <paramref name="multiprocessors"/> SMs (what stays resident: a
    /// persistent block that waits for another to finish doubles the time of its tiles), in whole channel blocks, never
    /// more per channel block than there are pixel tiles.
    /// </summary>
    public static long Int8PointwiseBlocks(long pixels, long outChannels, int multiprocessors, int perSm = 2)
    {
        var channelBlocks = Int8PointwiseChannelBlocks(outChannels);
        var tiles = (pixels + Int8PointwiseTileM - 1) / Int8PointwiseTileM;
        var resident = (long)perSm * multiprocessors;
        var perChannelBlock = Math.Clamp(resident / channelBlocks, 1, tiles); // rounded down: none waits for a slot
        return perChannelBlock * channelBlocks;
    }

    /// <summary>
    /// y[p, n] = saturate(rint(relu?(x[p, :] · w[n, :] · scale[n] + offset[n] [clamped, + r[p, n] · rscale + roffset])) +
    /// zero) - shift, as <see cref="Int8Conv"/>'s epilogue (<see cref="Int8ConvEpilogue"/>), for int8 channels-last x
    /// [pixels, C] and an int8 filter [K, C]. Each block keeps one channel block's filter rows (128 x C) in shared memory
    /// and walks pixel tiles of 64 (blockIdx / channel blocks, then every <c>gridDim / channel blocks</c>-th),
    /// <paramref name="stages"/> tiles in flight: while it multiplies one tile (mma.sync m16n8k32, int32 sums, all of C at
    /// once) and requantizes it, the next tiles' input rows and residuals arrive through cp.async. The requantized tile
    /// is written into the residual's shared-memory tile (each thread its own bytes) and leaves as 16-byte rows, so the
    /// residual is read and the output written in whole 128-byte lines. Blocks of the same pixel tile and neighbouring channel blocks run side by side,
    /// so the second reads its input rows from L2.
    /// </summary>
    /// <para>
    /// <paramref name="residentBlocks"/> is the launch bounds' blocks an SM (<see cref="Int8PointwiseBlocksPerSm"/>): two by
    /// default (128 registers a thread); three (85 registers) puts 24 warps instead of 16 on an SM where shared memory
    /// allows, more to hide the latency of each block's serial steps (wait, products, requantization, store), for
    /// measurement (BATCHWISE_INT8_POINTWISE_BLOCKS).
    /// </para>
    /// <para>
    /// With <paramref name="projection"/>, the residual is not read: the block's projection shortcut (another 1x1 int8
    /// convolution of the block's input x2 [pixels, C2] with filter w2 [K, C2], requantized as its own QuantizeLinear) is
    /// computed tile by tile into the residual's shared-memory tile, each thread the bytes its epilogue reads, so the
    /// shortcut's output never reaches memory. The same bytes as the shortcut's own kernel would store.
    /// </para>
    public static KernelCode Int8Pointwise(long channels, long outChannels, long pixels, long blocks, Int8ConvEpilogue epilogue, int stages = Int8PointwiseStages, int residentBlocks = Int8PointwiseResidentBlocks, Int8PointwiseProjection? projection = null)
    {
        if (!Int8PointwiseTakes(channels, outChannels) || pixels < 1 || pixels > int.MaxValue || blocks % Int8PointwiseChannelBlocks(outChannels) != 0 || stages is < 2 or > 4 || residentBlocks is < 1 or > 4)
        {
            throw new ArgumentException("int8 pointwise: 64 to 256 input channels in 32s, output channels in 64s, a block count in whole channel blocks, 2 to 4 stages, 1 to 4 resident blocks");
        }

        if (projection is not null && (epilogue.Residual is null || !Int8PointwiseTakes(projection.Channels, outChannels) || projection.Epilogue.Residual is not null || projection.Epilogue.Silu is not null || projection.Epilogue.Relu))
        {
            throw new ArgumentException("int8 pointwise: a projection shortcut needs the block end's residual, 64 to 256 input channels in 32s, and no residual, SiLU or ReLU of its own");
        }

        const int BM = Int8PointwiseTileM, BN = Int8PointwiseTileN, Block = Int8PointwiseBlock;
        var pb = (int)channels + 16; // bytes of a filter or input row in shared memory: an odd number of 16-byte units
        const int OP = BN + 16; // bytes of an output row in shared memory
        var segments = (int)channels / 16;
        var shared = projection is null ? Int8PointwiseSharedBytes(channels, stages) : Int8PointwiseSharedBytes(channels, stages, projection.Channels);
        var pb2 = (int)(projection?.Channels ?? 0) + 16; // bytes of a projection filter or input row
        var segments2 = (int)(projection?.Channels ?? 0) / 16;
        var w = new KernelWriter(small: true);
        var m = w.I32("m", checked((int)pixels));
        var k = w.I32("k", checked((int)outChannels));
        var nb = w.I32("channel_blocks", checked((int)Int8PointwiseChannelBlocks(outChannels)));
        var tiles = w.I32("tiles", checked((int)((pixels + BM - 1) / BM)));
        var stride = w.I32("stride", checked((int)(blocks / Int8PointwiseChannelBlocks(outChannels))));

        // Output channels not in 128s: the last channel block's upper half lies past them. Its filter rows are zeros, its
        // scales and offsets zero, and its residual bytes neither read nor its output bytes written (whole 16-byte
        // segments: the channels are in 64s).
        var partial = outChannels % BN != 0;
        string Within(string channel) => partial ? $" && {channel} < {k}" : string.Empty;
        var folded = w.Float("folded", epilogue.Folded);
        var requantize = Int8Requantize(w, epilogue, "v", "(signed char)(pair >> (8 * e))", "q[e]");
        var residualLoad = string.Empty;
        var folded2 = projection is null ? null : w.Float("projection_folded", projection.Epilogue.Folded);
        var requantize2 = projection is null ? null : Int8Requantize(w, projection.Epilogue, "v", "0", "q[e]", "projection_");
        if (projection is not null)
        {
            // The shortcut's input rows instead of the residual's bytes.
            residualLoad = $$"""
                        for (int i = tid; i < {{BM * segments2}}; i += {{Block}}) {
                            const int row = i / {{segments2}}, seg = i - row * {{segments2}}, p = t0 * {{BM}} + row;
                            bw_cp_async16(x2s_ + buf * {{BM * pb2 / 2}} + row * {{pb2 / 2}} + seg * 8, (const unsigned short*)(x2b + (i64)(p < {{m}} ? p : 0) * {{projection.Channels}} + seg * 16), p < {{m}});
                        }
                """;
        }
        else if (epilogue.Residual is not null)
        {
            residualLoad = $$"""
                        for (int i = tid; i < {{BM * BN / 16}}; i += {{Block}}) {
                            const int row = i >> 3, seg = i & 7, p = t0 * {{BM}} + row;
                            const bool in = p < {{m}}{{Within("n0 + seg * 16")}};
                            bw_cp_async16(os_ + buf * {{BM * OP / 2}} + row * {{OP / 2}} + seg * 8, (const unsigned short*)(rb + (in ? (i64)p * {{k}} + n0 + seg * 16 : 0)), in);
                        }
                """;
        }

        var projectionSetup = string.Empty;
        var projectionTile = string.Empty;
        if (projection is not null)
        {
            projectionSetup = $$"""
                    // The projection shortcut's filter block, scales and offsets (with its zero points folded), once.
                    unsigned short* const b2s_ = os_ + {{stages * BM * OP / 2}};   // [{{BN}}][{{pb2}} bytes] projection filter block
                    float* const so2_ = (float*)(b2s_ + {{BN * pb2 / 2}});         // [{{BN}}] its scales, then [{{BN}}] offsets
                    unsigned short* const x2s_ = (unsigned short*)(so2_ + {{2 * BN}}); // [{{stages}}][{{BM}}][{{pb2}} bytes] its input tiles
                    const signed char* const x2b = (const signed char*)x2;
            {{FilterBlockCopies("b2s_", "wt2", pb2 / 2, projection.Channels, Within, Block)}}
            {{ScaleTable("so2_", "scale2", "offset2", folded2!, Within, Block)}}

            """;
            projectionTile = $$"""
                    {
                        // The shortcut's tile: its products, requantized as its own QuantizeLinear into the residual tile's
                        // bytes that this thread's epilogue reads below (the same thread: no barrier between).
                        int acc[2][4][4];
                        #pragma unroll
                        for (int u = 0; u < 2; u++) {
                            #pragma unroll
                            for (int nj = 0; nj < 4; nj++) { acc[u][nj][0] = 0; acc[u][nj][1] = 0; acc[u][nj][2] = 0; acc[u][nj][3] = 0; }
                        }
                        const unsigned short* const at = x2s_ + buf * {{BM * pb2 / 2}};
                        const int aoff2 = (wm + (lane & 15)) * {{pb2 / 2}} + (lane >> 4) * 8;
                        const int boff2 = (wn + (lane >> 4) * 8 + (lane & 7)) * {{pb2 / 2}} + ((lane >> 3) & 1) * 8;
            {{WarpTileProducts("at", "aoff2", "b2s_", "boff2", pb2 / 2, projection.Channels)}}
                        unsigned char* const rt = (unsigned char*)(os_ + buf * {{BM * OP / 2}});
                        #pragma unroll
                        for (int nj = 0; nj < 4; nj++) {
                            const int n = wn + nj * 8 + 2 * t;
                            const float sc2[2] = {so2_[n], so2_[n + 1]}, of2[2] = {so2_[{{BN}} + n], so2_[{{BN}} + n + 1]};
                            #pragma unroll
                            for (int u = 0; u < 2; u++) {
                                #pragma unroll
                                for (int h = 0; h < 2; h++) {
                                    unsigned q[2];
                                    #pragma unroll
                                    for (int e = 0; e < 2; e++) {
                                        float v = (float)acc[u][nj][2 * h + e] * sc2[e] + of2[e];
                                        {{requantize2}}
                                    }
                                    *(unsigned short*)(rt + (wm + u * 16 + g + 8 * h) * {{OP}} + n) = (unsigned short)__byte_perm(q[0], q[1], 0x0040);
                                }
                            }
                        }
                    }

            """;
        }

        w.Body.Append(SharedHalves(shared));
        w.Body.Append($$"""
                unsigned short* const bs_ = sm_;                                  // [{{BN}}][{{pb}} bytes] filter block
                unsigned short* const as_ = sm_ + {{BN * pb / 2}};                // [{{stages}}][{{BM}}][{{pb}} bytes] input tiles
                unsigned short* const os_ = as_ + {{stages * BM * pb / 2}};       // [{{stages}}][{{BM}}][{{OP}} bytes] residual, then output tiles
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                const int cb = (int)blockIdx.x % {{nb}}, n0 = cb * {{BN}};
                const int wm = (warp >> 2) * 32, wn = (warp & 3) * 32;
                const signed char* const xb = (const signed char*)x;
                const signed char* const rb = (const signed char*)r;
            {{projectionSetup}}
                // This thread's output channels (the same in every tile): their scale and offset in registers.
                float sc[4][2], of[4][2];
                #pragma unroll
                for (int nj = 0; nj < 4; nj++) {
                    #pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int n = n0 + wn + nj * 8 + 2 * t + e;
                        {{(partial ? $"if (n >= {k}) {{ sc[nj][e] = 0.f; of[nj][e] = 0.f; continue; }}" : string.Empty)}}
                        sc[nj][e] = scale[n]; of[nj][e] = offset[n] + {{folded}};
                    }
                }

                // The filter block once, then the first tile.
            {{FilterBlockCopies("bs_", "wt", pb / 2, channels, Within, Block)}}
                auto load = [&](int t0, int buf) {
                    for (int i = tid; i < {{BM * segments}}; i += {{Block}}) {
                        const int row = i / {{segments}}, seg = i - row * {{segments}}, p = t0 * {{BM}} + row;
                        bw_cp_async16(as_ + buf * {{BM * pb / 2}} + row * {{pb / 2}} + seg * 8, (const unsigned short*)(xb + (i64)(p < {{m}} ? p : 0) * {{channels}} + seg * 16), p < {{m}});
                    }
            {{residualLoad}}
                };
                int tile = (int)blockIdx.x / {{nb}};
            {{TilesFirstCopies(stages, stride, tiles)}}

                const int aoff = (wm + (lane & 15)) * {{pb / 2}} + (lane >> 4) * 8;
                const int boff = (wn + (lane >> 4) * 8 + (lane & 7)) * {{pb / 2}} + ((lane >> 3) & 1) * 8;
            {{TilesLoop(stages, stride, tiles, "__syncthreads()")}}

                    int acc[2][4][4];
                    #pragma unroll
                    for (int u = 0; u < 2; u++) {
                        #pragma unroll
                        for (int nj = 0; nj < 4; nj++) { acc[u][nj][0] = 0; acc[u][nj][1] = 0; acc[u][nj][2] = 0; acc[u][nj][3] = 0; }
                    }
            {{projectionTile}}
                    const unsigned short* const at = as_ + buf * {{BM * pb / 2}};
            {{WarpTileProducts("at", "aoff", "bs_", "boff", pb / 2, channels)}}

                    // Requantize into the tile's output rows (over the residual, each thread its own two bytes a row).
                    unsigned char* const ot = (unsigned char*)(os_ + buf * {{BM * OP / 2}});
                    #pragma unroll
                    for (int u = 0; u < 2; u++) {
                        #pragma unroll
                        for (int nj = 0; nj < 4; nj++) {
                            #pragma unroll
                            for (int h = 0; h < 2; h++) {
                                unsigned short* const at2 = (unsigned short*)(ot + (wm + u * 16 + g + 8 * h) * {{OP}} + wn + nj * 8 + 2 * t);
                                {{(epilogue.Residual is null ? string.Empty : "const unsigned pair = *at2;")}}
                                unsigned q[2];
                                #pragma unroll
                                for (int e = 0; e < 2; e++) {
                                    float v = (float)acc[u][nj][2 * h + e] * sc[nj][e] + of[nj][e];
                                    {{requantize}}
                                }
                                *at2 = (unsigned short)__byte_perm(q[0], q[1], 0x0040);
                            }
                        }
                    }
                    __syncthreads();
                    signed char* const yb = (signed char*)y;
                    for (int i = tid; i < {{BM * BN / 16}}; i += {{Block}}) {
                        const int row = i >> 3, seg = i & 7, p = tile * {{BM}} + row;
                        if (p < {{m}}{{Within("n0 + seg * 16")}}) *(uint4*)(yb + (i64)p * {{k}} + n0 + seg * 16) = *(const uint4*)(ot + row * {{OP}} + seg * 16);
                    }
                    __syncthreads();
                }
                bw_cp_async_wait<0>();

            """);
        return Int8PointwiseKernel(w, projection is not null, Block, residentBlocks, shared);
    }

    /// <summary>
    /// The pointwise int8 kernels' common end: <paramref name="w"/>'s kernel with their parameters (y, x, the filter, scales
    /// and offsets, the residual; the projection shortcut's input, filter, scales and offsets where
    /// <paramref name="projection"/>; then <paramref name="more"/>), launch bounds of <paramref name="threads"/> threads and
    /// <paramref name="residentBlocks"/> blocks an SM, the mma helpers, and <paramref name="shared"/> bytes of dynamic
    /// shared memory where past the static limit.
    /// </summary>
    private static KernelCode Int8PointwiseKernel(KernelWriter w, bool projection, int threads, int residentBlocks, int shared, string more = "")
    {
        var shortcut = projection ? "const signed char* __restrict__ x2, const signed char* __restrict__ wt2, const float* __restrict__ scale2, const float* __restrict__ offset2, " : string.Empty;
        var code = w.Build($"signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ wt, const float* __restrict__ scale, const float* __restrict__ offset, const signed char* __restrict__ r, {shortcut}{(more.Length > 0 ? more + ", " : string.Empty)}{KernelWriter.ArgsParameter}");
        var source = code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __launch_bounds__({threads}, {residentBlocks}) ", StringComparison.Ordinal);
        return code with { Source = AttentionHelpers + Int8MmaHelper + source, SharedBytes = shared > StaticSharedBytes ? shared : 0 };
    }

    /// <summary>
    /// A block's copies of a channel block's 128 filter rows (<paramref name="rows"/> where given; <paramref name="weights"/>,
    /// <paramref name="channels"/> int8 values a row, from output channel n0) into <paramref name="filter"/> (rows
    /// <paramref name="pitch"/> 16-bit units apart, or at <paramref name="place"/>: an expression of row and seg, the
    /// 16-byte segment, in 16-bit units) through cp.async by a block of <paramref name="block"/> threads, rows past the
    /// output channels (<paramref name="within"/>) zero-filled.
    /// </summary>
    private static string FilterBlockCopies(string filter, string weights, int pitch, long channels, Func<string, string> within, int block, int rows = Int8PointwiseTileN, string? place = null) => $$"""
                    for (int i = tid; i < {{rows * (channels / 16)}}; i += {{block}}) {
                        const int row = i / {{channels / 16}}, seg = i - row * {{channels / 16}};
                        const bool in = true{{within("n0 + row")}};
                        bw_cp_async16({{filter}} + {{place ?? $"row * {pitch} + seg * 8"}}, (const unsigned short*)((const signed char*){{weights}} + (in ? (i64)(n0 + row) * {{channels}} + seg * 16 : 0)), in);
                    }
        """;

    /// <summary>
    /// A channel block's 128 scales and offsets (<paramref name="scales"/>[n], <paramref name="offsets"/>[n] +
    /// <paramref name="folded"/>) into the shared table <paramref name="table"/> (scales, then offsets), zero past the
    /// output channels (<paramref name="within"/>), by a block of <paramref name="block"/> threads.
    /// </summary>
    private static string ScaleTable(string table, string scales, string offsets, string folded, Func<string, string> within, int block) => $$"""
                    for (int i = tid; i < {{Int8PointwiseTileN}}; i += {{block}}) {
                        const int n = n0 + i;
                        const bool in = true{{within("n")}};
                        {{table}}[i] = in ? {{scales}}[n] : 0.f;
                        {{table}}[{{Int8PointwiseTileN}} + i] = in ? {{offsets}}[n] + {{folded}} : 0.f;
                    }
        """;

    /// <summary>
    /// A warp's 32 x 32 tile of int8 products over <paramref name="channels"/> (k32 steps): the rows from
    /// <paramref name="a"/> at this lane's <paramref name="aoff"/> and the filter rows from <paramref name="b"/> at its
    /// <paramref name="boff"/> (ldmatrix, rows <paramref name="pitch"/> 16-bit units apart), summed into int acc[2][4][4]
    /// (mma.sync m16n8k32).
    /// </summary>
    private static string WarpTileProducts(string a, string aoff, string b, string boff, int pitch, long channels) => $$"""
                    #pragma unroll
                    for (int ks = 0; ks < {{channels / 32}}; ks++) {
                        unsigned af[2][4];
                        bw_ldsm_x4(af[0], {{a}} + {{aoff}} + ks * 16);
                        bw_ldsm_x4(af[1], {{a}} + {{aoff}} + 16 * {{pitch}} + ks * 16);
                        #pragma unroll
                        for (int np = 0; np < 2; np++) {
                            unsigned f[4];
                            bw_ldsm_x4(f, {{b}} + {{boff}} + np * 16 * {{pitch}} + ks * 16);
                            #pragma unroll
                            for (int u = 0; u < 2; u++) { bw_mma_16832_s8(acc[u][2 * np], af[u], f[0], f[1]); bw_mma_16832_s8(acc[u][2 * np + 1], af[u], f[2], f[3]); }
                        }
                    }
        """;
}

/// <summary>
/// A residual block's projection shortcut computed inside the block end's <see cref="KernelSource.Int8Pointwise"/> (its
/// residual): an unstrided, unpadded 1x1 int8 convolution of the block's input (<paramref name="Channels"/> channels)
/// with its own requantization (<paramref name="Epilogue"/>: the shortcut's QuantizeLinear, no ReLU, residual or SiLU).
/// </summary>
internal sealed record Int8PointwiseProjection(long Channels, Int8ConvEpilogue Epilogue);
