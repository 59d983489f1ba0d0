namespace Batchwise.Cuda.Kernels;

/// <summary>
/// What a <see cref="KernelSource.GroupedConv"/> kernel does after the product: add the bias (null: none) and, with
/// <paramref name="Relu"/>, a residual (when given) and the ReLU. Another activation after it is an elementwise chain
/// over the kernel's output alone.
/// </summary>
/// <param name="Bias">The bias's storage type, or null for none.</param>
/// <param name="Relu">max(0, .) last.</param>
/// <param name="Residual">A tensor of the output's shape added before the ReLU.</param>
internal sealed record GroupedConvEpilogue(Onnx.ElementType? Bias, bool Relu, bool Residual)
{
    /// <summary>
    /// The epilogue's statements for neighbouring output channels held in <paramref name="values"/>: bias[<paramref name="biasAt"/> + i]
    /// and z[<paramref name="residualAt"/> + i] added to value i, then the ReLU, each where the epilogue has it.
    /// </summary>
    public string Text(string[] values, string biasAt, string residualAt)
    {
        static string At(string at, int i) => i == 0 ? at : $"{at} + {i}";
        var text = new System.Text.StringBuilder();
        for (var i = 0; Bias is not null && i < values.Length; i++)
        {
            text.Append($"{values[i]} += (float)bias[{At(biasAt, i)}]; ");
        }

        for (var i = 0; Residual && i < values.Length; i++)
        {
            text.Append($"{values[i]} += (float)z[{At(residualAt, i)}]; ");
        }

        for (var i = 0; Relu && i < values.Length; i++)
        {
            text.Append($"{values[i]} = fmaxf({values[i]}, 0.f); ");
        }

        return text.ToString();
    }
}

/// <summary>Grouped convolutions (1 &lt; groups &lt; channels) in channels-last half precision on tensor cores.</summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="GroupedConv"/>: four warps.</summary>
    public const int GroupedConvBlock = 128;

    /// <summary>Output columns of one block's tile (one 8x8 ldmatrix matrix is 8 neighbouring output pixels of a row).</summary>
    public const int GroupedConvTileWidth = 8;

    /// <summary>Widest group (input or output channels per group) <see cref="GroupedConv"/> takes.</summary>
    public const int GroupedConvMaxWidth = 64;

    /// <summary>Static shared memory a block may have.</summary>
    private const int StaticSharedBytes = Planning.KernelCache.StaticSharedBytes;

    /// <summary>
    /// The m16 tiles each warp of <see cref="GroupedConv"/> computes (the block's tile is 4 x that x 2 output rows by
    /// <see cref="GroupedConvTileWidth"/> columns): 2 (16 rows) where the output's height wastes no more rows that way
    /// than with 1 (8 rows) and the input tile fits shared memory, else 1; null when not even that fits (or the group
    /// widths are not multiples of 8 up to <see cref="GroupedConvMaxWidth"/>): such a convolution stays with cuDNN. The
    /// choice is made within the 48 KB of static shared memory first (what fits there is generated as before), and only
    /// where nothing fits there within <paramref name="maxSharedBytes"/> (dynamic shared memory up to the device's
    /// opt-in limit; a stem's 64 x 7 x 7 x 8 filter alone is 51 KB).
    /// </summary>
    public static int? GroupedConvTilesPerWarp(long groupIn, long groupOut, long[] kernel, long[] strides, long[] dilations, long outHeight, int maxSharedBytes = StaticSharedBytes, bool byParity = false)
    {
        if (groupIn % 8 != 0 || groupOut % 8 != 0 || groupIn is < 8 or > GroupedConvMaxWidth || groupOut is < 8 or > GroupedConvMaxWidth || kernel.Length != 2
            || (byParity && strides[1] != 2))
        {
            return null;
        }

        var tall = (outHeight + 15) / 16 * 16 <= (outHeight + 7) / 8 * 8;
        int? Within(int limit)
        {
            bool Fits(int tiles) => GroupedConvSharedBytes((int)groupIn, (int)groupOut, kernel, strides, dilations, tiles, byParity) <= limit;
            return tall && Fits(2) ? 2 : Fits(1) ? 1 : null;
        }

        return Within(StaticSharedBytes) ?? (maxSharedBytes > StaticSharedBytes ? Within(maxSharedBytes) : null);
    }

    /// <summary>Shared memory of one block: the input tile with its halo and the group's filter, both with padded rows.</summary>
    private static long GroupedConvSharedBytes(int groupIn, int groupOut, long[] kernel, long[] strides, long[] dilations, int tilesPerWarp, bool byParity)
    {
        var g = GroupedConvGeometry(groupIn, kernel, strides, dilations, tilesPerWarp, byParity);
        return (2L * g.InRows * g.RowPixels * g.PixelPitch) + (2L * groupOut * g.FilterPitch);
    }

    /// <summary>
    /// The compile-time geometry of a block: output rows of its tile, the input rows and columns that tile reads, the
    /// pixels a row of the tile takes in shared memory (its columns, one more where they are stored by parity and odd in
    /// number), the shared-memory pitch of one input pixel (halves; an odd number of 16-byte units, so the 8 pixels of an ldmatrix
    /// matrix fall in distinct banks at stride 1), the reduction length (taps x group width) rounded up to 16, and the
    /// filter's row pitch (halves; 8 more than that, an odd number of 16-byte units).
    /// </summary>
    private static (int Rows, int InRows, int InCols, int RowPixels, int PixelPitch, int Reduction, int PaddedReduction, int FilterPitch) GroupedConvGeometry(int groupIn, long[] kernel, long[] strides, long[] dilations, int tilesPerWarp, bool byParity)
    {
        var rows = 2 * tilesPerWarp * (GroupedConvBlock / 32);
        var inRows = checked((int)(((rows - 1) * strides[0]) + ((kernel[0] - 1) * dilations[0]) + 1));
        var inCols = checked((int)(((GroupedConvTileWidth - 1) * strides[1]) + ((kernel[1] - 1) * dilations[1]) + 1));
        var units = groupIn / 8;
        var pixelPitch = (units % 2 == 1 ? units : units + 1) * 8;
        var reduction = checked((int)(kernel[0] * kernel[1] * groupIn));
        var padded = (reduction + 15) / 16 * 16;
        return (rows, inRows, inCols, byParity ? (inCols + 1) / 2 * 2 : inCols, pixelPitch, reduction, padded, padded + 8);
    }

    /// <summary>
    /// A grouped 2-d convolution in channels-last half precision: x [N, H, W, C], filter [K, kh, kw, C/G] (KRSC), y [N, OH,
    /// OW, K], C/G and K/G multiples of 8 up to <see cref="GroupedConvMaxWidth"/>. An implicit GEMM per group on tensor
    /// cores (mma.sync m16n8k16, half inputs, float accumulation): M = output pixels, N = the group's output channels, K =
    /// taps x the group's input channels in chunks of 8 channels of one tap. One block computes a tile of 8 x 16 (or 8 x 8)
    /// output pixels of one image and one group: the input tile with its halo (zero outside the image) and the group's
    /// filter go to shared memory by cp.async, then each warp takes 2 (or 1) m16 tiles (two output rows of 8 pixels each)
    /// and loads their A fragments by ldmatrix straight from the input tile: each lane names the 16 bytes (8 channels of
    /// one tap) its row of a matrix needs, so the im2col gather costs nothing. B fragments come from the filter by
    /// ldmatrix as the attention kernel loads keys. The epilogue (<paramref name="epilogue"/>) adds the bias, the residual
    /// and the ReLU. Window, strides, dilations, group widths and the tile are part of the kernel; sizes and pads are
    /// arguments. The blocks of one pixel tile are neighbours for all groups, so the input's lines are read from DRAM
    /// about once. With <paramref name="byParity"/> (stride 2 across) each row of the input tile is stored even columns
    /// first, then odd ones: the 8 pixels of an ldmatrix matrix, 2 columns apart in the image, are then neighbours in
    /// shared memory (an odd number of 16-byte units apart, free of bank conflicts, where 2 pitches apart they conflict
    /// two ways at 8 channels).
    /// </summary>
    public static KernelCode GroupedConv(int groupIn, int groupOut, long[] kernel, long[] strides, long[] dilations, int tilesPerWarp, GroupedConvEpilogue epilogue, long batch, long groups, long[] inSpatial, long[] outSpatial, long[] padsBegin, bool byParity = false)
    {
        if (groupIn % 8 != 0 || groupOut % 8 != 0 || groupIn is < 8 or > GroupedConvMaxWidth || groupOut is < 8 or > GroupedConvMaxWidth || kernel.Length != 2
            || tilesPerWarp is not (1 or 2) || (byParity && strides[1] != 2))
        {
            throw new ArgumentException("grouped conv: group widths multiples of 8 up to 64, a 2-d window (stride 2 across for columns by parity)");
        }

        // Above the static limit the block's shared memory is dynamic: declared extern, launched with its size (the
        // function opted in to it when loaded, KernelCache.Resolve); the caller checked it against the device's limit.
        var shared = checked((int)GroupedConvSharedBytes(groupIn, groupOut, kernel, strides, dilations, tilesPerWarp, byParity));
        var dynamic = shared > StaticSharedBytes;

        var (rows, inRows, inCols, rowPixels, pitch, reduction, padded, filterPitch) = GroupedConvGeometry(groupIn, kernel, strides, dilations, tilesPerWarp, byParity);
        var (kw, sh, sw, dh, dw) = (kernel[1], strides[0], strides[1], dilations[0], dilations[1]);

        // Where the tile's pixel (r, q) sits in shared memory, where a tap's column and a lane's output column start.
        var half = rowPixels / 2;
        var slot = byParity ? $"(r * {rowPixels} + (q & 1) * {half} + (q >> 1))" : "p";
        var tapColumn = byParity ? $"((kj * {dw}) & 1) * {half} + ((kj * {dw}) >> 1)" : $"kj * {dw}";
        var laneColumn = byParity ? "(lane & 7)" : $"(lane & 7) * {sw}";
        var mt = tilesPerWarp;
        var nt = groupOut / 8;
        var chunks = groupIn / 8;
        var w = new KernelWriter(small: true);
        var g = w.I32("groups", checked((int)groups));
        var tilesX = w.I32("tiles_x", checked((int)((outSpatial[1] + GroupedConvTileWidth - 1) / GroupedConvTileWidth)));
        var tilesY = w.I32("tiles_y", checked((int)((outSpatial[0] + rows - 1) / rows)));
        var (ih, iw) = (w.I32("ih", checked((int)inSpatial[0])), w.I32("iw", checked((int)inSpatial[1])));
        var (oh, ow) = (w.I32("oh", checked((int)outSpatial[0])), w.I32("ow", checked((int)outSpatial[1])));
        var (ph, pw) = (w.I32("ph", checked((int)padsBegin[0])), w.I32("pw", checked((int)padsBegin[1])));
        var blocks = w.I64("blocks", batch * groups * ((outSpatial[0] + rows - 1) / rows) * ((outSpatial[1] + GroupedConvTileWidth - 1) / GroupedConvTileWidth));
        var c = w.I32("c", checked((int)(groups * groupIn)));
        var k = w.I32("k", checked((int)(groups * groupOut)));

        // The epilogue of one pair of neighbouring output channels (v0, v1) at output element o, channel n of the group.
        var finish = epilogue.Text(["v0", "v1"], "gk + n", "o + n");

        w.Body.Append(dynamic
            ? $"""
                    extern __shared__ __align__(16) unsigned short bw_dynamic_shared[];
                    unsigned short* const xs = bw_dynamic_shared;
                    unsigned short* const fs = bw_dynamic_shared + {inRows * rowPixels * pitch};

                """
            : $"""
                    __shared__ __align__(16) unsigned short xs[{inRows * rowPixels * pitch}];
                    __shared__ __align__(16) unsigned short fs[{groupOut * filterPitch}];

                """);
        w.Body.Append($$"""
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, hi = lane >> 4;
                if ((i64)blockIdx.x >= {{blocks}}) return;
                // Block order: group fastest, then tile column, tile row, image (a pixel tile's groups run side by side).
                unsigned r_ = blockIdx.x;
                const int grp = (int)(r_ % (unsigned){{g}}); r_ /= (unsigned){{g}};
                const int tx = (int)(r_ % (unsigned){{tilesX}}); r_ /= (unsigned){{tilesX}};
                const int ty = (int)(r_ % (unsigned){{tilesY}});
                const i64 img = r_ / (unsigned){{tilesY}};
                const int oy0 = ty * {{rows}}, ox0 = tx * {{GroupedConvTileWidth}};
                const int iy0 = oy0 * {{sh}} - {{ph}}, ix0 = ox0 * {{sw}} - {{pw}};

                // The input tile [{{inRows}}][{{inCols}}] pixels of this group's {{groupIn}} channels (pitch {{pitch}}), zero outside the image.
                const unsigned short* const xg = (const unsigned short*)x + img * {{ih}} * {{iw}} * {{c}} + grp * {{groupIn}};
                for (int i = tid; i < {{inRows * inCols * chunks}}; i += {{GroupedConvBlock}}) {
                    const int p = i / {{chunks}}, ch = (i - p * {{chunks}}) * 8;
                    const int r = p / {{inCols}}, q = p - r * {{inCols}};
                    const int iy = iy0 + r, ix = ix0 + q;
                    const bool in = iy >= 0 && iy < {{ih}} && ix >= 0 && ix < {{iw}};
                    bw_cp_async16(xs + {{slot}} * {{pitch}} + ch, in ? xg + ((i64)iy * {{iw}} + ix) * {{c}} + ch : xg, in);
                }

                // The group's filter [{{groupOut}}][{{reduction}}] (tap-major, then channel), zero from {{reduction}} to {{padded}}.
                const unsigned short* const wg = (const unsigned short*)wt + (i64)grp * {{groupOut * reduction}};
                for (int i = tid; i < {{groupOut * padded / 8}}; i += {{GroupedConvBlock}}) {
                    const int r = i / {{padded / 8}}, col = (i - r * {{padded / 8}}) * 8;
                    const bool in = col < {{reduction}};
                    bw_cp_async16(fs + r * {{filterPitch}} + col, in ? wg + r * {{reduction}} + col : wg, in);
                }
                bw_cp_async_commit();
                bw_cp_async_wait<0>();
                __syncthreads();

                // Where chunk kc of the reduction (8 channels of tap kc / {{chunks}}) sits in the input tile, relative to the
                // output pixel's own window corner; chunks past the end read chunk 0 (their filter columns are zero).
                auto chunk = [](int kc) {
                    const int tap = kc / {{chunks}}, ch = kc - tap * {{chunks}};
                    const int ki = tap / {{kw}}, kj = tap - ki * {{kw}};
                    return kc < {{reduction / 8}} ? (ki * {{dh}} * {{rowPixels}} + {{tapColumn}}) * {{pitch}} + ch * 8 : 0;
                };

                // This lane's row of each A matrix: output row (lane >> 3) & 1 of its m16 tile (two output rows), column
                // lane & 7; lanes 16-31 name the second 8 columns of the k16 step. B: output channel lane & 7 (+ 8 for
                // lanes 16-31) of an n-tile pair, k half (lane >> 3) & 1.
                const unsigned short* arow[{{mt}}];
                #pragma unroll
                for (int m = 0; m < {{mt}}; m++) arow[m] = xs + ((2 * (warp * {{mt}} + m) + ((lane >> 3) & 1)) * {{sh}} * {{rowPixels}} + {{laneColumn}}) * {{pitch}};
                const unsigned short* const brow = fs + (lane & 7) * {{filterPitch}} + ((lane >> 3) & 1) * 8;

                float acc[{{mt}}][{{nt}}][4];
                #pragma unroll
                for (int m = 0; m < {{mt}}; m++) {
                    #pragma unroll
                    for (int n = 0; n < {{nt}}; n++) { acc[m][n][0] = 0.f; acc[m][n][1] = 0.f; acc[m][n][2] = 0.f; acc[m][n][3] = 0.f; }
                }
                #pragma unroll
                for (int kk = 0; kk < {{padded / 16}}; kk++) {
                    const int ao = hi ? chunk(2 * kk + 1) : chunk(2 * kk);
                    unsigned a[{{mt}}][4];
                    #pragma unroll
                    for (int m = 0; m < {{mt}}; m++) bw_ldsm_x4(a[m], arow[m] + ao);
                    #pragma unroll
                    for (int np = 0; np < {{nt / 2}}; np++) {
                        unsigned f[4];
                        bw_ldsm_x4(f, brow + (np * 16 + hi * 8) * {{filterPitch}} + kk * 16);
                        #pragma unroll
                        for (int m = 0; m < {{mt}}; m++) { bw_mma_16816(acc[m][2 * np], a[m], f[0], f[1]); bw_mma_16816(acc[m][2 * np + 1], a[m], f[2], f[3]); }
                    }
                    if ({{nt % 2}}) {
                        // The odd last n-tile: lanes 16-31 repeat lanes 0-15's rows (matrices 2 and 3 unused).
                        unsigned f[4];
                        bw_ldsm_x4(f, brow + {{(nt - 1) * 8}} * {{filterPitch}} + kk * 16);
                        #pragma unroll
                        for (int m = 0; m < {{mt}}; m++) bw_mma_16816(acc[m][{{nt - 1}}], a[m], f[0], f[1]);
                    }
                }

                // Out: accumulator i of n-tile n holds output row g (+ 8 for i >= 2) of the m16 tile, channels 2t and 2t + 1.
                const int gk = grp * {{groupOut}};
                #pragma unroll
                for (int m = 0; m < {{mt}}; m++) {
                    #pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int oy = oy0 + 2 * (warp * {{mt}} + m) + h, ox = ox0 + g;
                        if (oy >= {{oh}} || ox >= {{ow}}) continue;
                        const i64 o = ((img * {{oh}} + oy) * {{ow}} + ox) * {{k}} + gk;
                        #pragma unroll
                        for (int nb = 0; nb < {{nt}}; nb++) {
                            const int n = nb * 8 + 2 * t;
                            float v0 = acc[m][nb][2 * h], v1 = acc[m][nb][2 * h + 1];
                            {{finish}}
                            *(unsigned*)((unsigned short*)y + o + n) = bw_pack_half2(v0, v1);
                        }
                    }
                }

            """);
        var bias = epilogue.Bias is { } bt ? CType(bt) : "bw_half";
        var code = w.Build($"bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const {bias}* __restrict__ bias, const bw_half* __restrict__ z, {KernelWriter.ArgsParameter}");
        return code with { Source = AttentionHelpers + code.Source, SharedBytes = dynamic ? shared : 0 };
    }

    /// <summary>Threads to launch <see cref="GroupedConv"/> with: a block per (image, tile row, tile column, group).</summary>
    public static long GroupedConvThreads(long batch, long groups, long[] outSpatial, int tilesPerWarp) =>
        batch * groups * ((outSpatial[0] + (8 * tilesPerWarp) - 1) / (8 * tilesPerWarp)) * ((outSpatial[1] + GroupedConvTileWidth - 1) / GroupedConvTileWidth) * GroupedConvBlock;
}
