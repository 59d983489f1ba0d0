namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Dense convolutions with few output tiles (ResNet's 3x3 layers at batch 1: 8 to 26 tiles of 64 x 64 for 132 SMs) in
/// channels-last half precision on tensor cores, the reduction split across blocks.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="SplitKConv"/>: four warps, each 32 x 32 of the block's 64 x 64 tile.</summary>
    public const int SplitKConvBlock = 128;

    /// <summary>Output pixels (rows) and output channels (columns) of one block's tile.</summary>
    public const int SplitKConvTile = 64;

    /// <summary>Input channels of one step of the reduction (one tap's 32 channels): the input's channels are a multiple of it.</summary>
    public const int SplitKConvChunk = 32;

    /// <summary>Shared-memory stages of the cp.async pipeline.</summary>
    private const int SplitKStages = 4;

    /// <summary>Shared-memory pitch of a tile row (halves): 32 + 8, an odd number of 16-byte units (conflict-free ldmatrix).</summary>
    private const int SplitKPitch = 40;

    /// <summary>Floats of one block's partial tile in the workspace.</summary>
    public const int SplitKPartialFloats = SplitKConvTile * SplitKConvTile;

    /// <summary>
    /// How a dense convolution of <paramref name="pixels"/> output pixels (batch x output positions), <paramref name="outChannels"/>
    /// output channels and a reduction of <paramref name="chunks"/> steps of <see cref="SplitKConvChunk"/> channels is split
    /// over <paramref name="multiprocessors"/> SMs: (splits, chunks per split), splits &gt;= 2 only where the unsplit grid
    /// fills at most half of the device, no more than 16, each split at least 4 steps long and none empty; null where a
    /// split would not pay (the tiles alone fill the device, or the reduction is too short to share).
    /// </summary>
    public static (int Splits, int PerSplit)? SplitKConvSplits(long pixels, long outChannels, long chunks, int multiprocessors)
    {
        var tiles = ((pixels + SplitKConvTile - 1) / SplitKConvTile) * (outChannels / SplitKConvTile);
        if (tiles < 1 || chunks < 8)
        {
            return null;
        }

        var splits = Math.Min(Math.Min(16, multiprocessors / tiles), chunks / 4);
        if (splits < 2)
        {
            return null;
        }

        var perSplit = (chunks + splits - 1) / splits;
        return ((int)((chunks + perSplit - 1) / perSplit), (int)perSplit);
    }

    /// <summary>
    /// A dense 2-d convolution in channels-last half precision, x [N, H, W, C] (C a multiple of 32), filter [K, kh, kw, C]
    /// (KRSC, K a multiple of 64), y [N, OH, OW, K]: an implicit GEMM (M = output pixels, N = output channels, reduction =
    /// taps x channels) on tensor cores (mma.sync m16n8k16, half inputs, float accumulation). A block computes a 64 x 64
    /// tile over its share of the reduction (<paramref name="perSplit"/> steps of one tap's 32 channels), streaming input
    /// rows (gathered per tap, zero outside the image: the im2col costs nothing) and filter rows through four cp.async
    /// stages into ldmatrix. With more than one split each block leaves its float partial tile in <c>part</c> and counts
    /// itself in <c>counters</c>; the block that arrives last sums the others' partials with its own, adds the bias, the
    /// residual and the ReLU (<paramref name="epilogue"/>, as <see cref="GroupedConv"/>'s), writes the tile and sets its
    /// counter back to zero. The counters are zero before the kernel runs (<see cref="SplitKCountersReset"/> at the plan's
    /// start). Taps, strides, dilations and the input's channels are part of the kernel; sizes are arguments.
    /// </summary>
    public static KernelCode SplitKConv(long channels, long[] kernel, long[] strides, long[] dilations, GroupedConvEpilogue epilogue, long batch, long outChannels, long[] inSpatial, long[] outSpatial, long[] padsBegin, int splits, int perSplit, long counterBase)
    {
        if (channels % SplitKConvChunk != 0 || outChannels % SplitKConvTile != 0 || kernel.Length != 2 || splits < 1 || perSplit < 1)
        {
            throw new ArgumentException("split-K conv: input channels a multiple of 32, output channels of 64, a 2-d window");
        }

        var perTap = channels / SplitKConvChunk;
        var chunks = kernel[0] * kernel[1] * perTap;
        var reduction = kernel[0] * kernel[1] * channels;
        var pixels = batch * outSpatial[0] * outSpatial[1];
        var tilesM = (pixels + SplitKConvTile - 1) / SplitKConvTile;
        var tilesN = outChannels / SplitKConvTile;
        var w = new KernelWriter(small: true);
        var m = w.I32("m", checked((int)pixels));
        var k = w.I32("k", checked((int)outChannels));
        var tn = w.I32("tiles_n", checked((int)tilesN));
        var tm = w.I32("tiles_m", checked((int)tilesM));
        var blocks = w.I32("blocks", checked((int)(tilesM * tilesN * splits)));
        var nSplits = w.I32("splits", splits);
        var per = w.I32("per_split", perSplit);
        var cbase = w.I32("counter_base", checked((int)counterBase));
        var (ih, iw) = (w.I32("ih", checked((int)inSpatial[0])), w.I32("iw", checked((int)inSpatial[1])));
        var (oh, ow) = (w.I32("oh", checked((int)outSpatial[0])), w.I32("ow", checked((int)outSpatial[1])));
        var (ph, pw) = (w.I32("ph", checked((int)padsBegin[0])), w.I32("pw", checked((int)padsBegin[1])));
        var (kw, sh, sw, dh, dw) = (kernel[1], strides[0], strides[1], dilations[0], dilations[1]);
        const int T = SplitKConvTile, P = SplitKPitch, S = SplitKStages;

        var finish = new System.Text.StringBuilder();
        if (epilogue.Bias is not null)
        {
            finish.Append("v0 += (float)bias[n0 + n]; v1 += (float)bias[n0 + n + 1]; ");
        }

        if (epilogue.Residual)
        {
            finish.Append("v0 += (float)z[o + n]; v1 += (float)z[o + n + 1]; ");
        }

        if (epilogue.Relu)
        {
            finish.Append("v0 = fmaxf(v0, 0.f); v1 = fmaxf(v1, 0.f); ");
        }

        w.Body.Append($$"""
                __shared__ __align__(16) unsigned short as_[{{S * T * P}}];
                __shared__ __align__(16) unsigned short bs_[{{S * T * P}}];
                __shared__ unsigned last_;
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                if ((int)blockIdx.x >= {{blocks}}) return;
                // Block order: output-channel tile fastest, then pixel tile, then split.
                const int tcol = (int)blockIdx.x % {{tn}}, rest_ = (int)blockIdx.x / {{tn}};
                const int trow = rest_ % {{tm}}, split = rest_ / {{tm}};
                const int tile = trow * {{tn}} + tcol, m0 = trow * {{T}}, n0 = tcol * {{T}};
                const int kc0 = split * {{per}};
                const int count = {{chunks}} - kc0 < {{per}} ? {{chunks}} - kc0 : {{per}};

                // This thread's copies: segment tid & 3 (8 halves) of tile rows tid >> 2 and that + 32, for the input
                // (an output pixel's window corner, checked per tap) and the filter (an output channel's row).
                const int seg = tid & 3, lr = tid >> 2;
                const unsigned short* const xh = (const unsigned short*)x;
                const unsigned short* const wh = (const unsigned short*)wt;
                i64 xbase[2]; int iy0[2], ix0[2]; bool pv[2];
                #pragma unroll
                for (int j = 0; j < 2; j++) {
                    const int p = m0 + lr + 32 * j;
                    pv[j] = p < {{m}};
                    const int pp = pv[j] ? p : 0, ohw = {{oh}} * {{ow}};
                    const int img = pp / ohw, rem = pp - img * ohw, oy = rem / {{ow}}, ox = rem - oy * {{ow}};
                    xbase[j] = (i64)img * {{ih}} * {{iw}} * {{channels}} + seg * 8;
                    iy0[j] = oy * {{sh}} - {{ph}};
                    ix0[j] = ox * {{sw}} - {{pw}};
                }
                auto load = [&](int kc, int stage) {
                    const int tap = kc / {{perTap}}, cc = (kc - tap * {{perTap}}) * {{SplitKConvChunk}};
                    const int ki = tap / {{kw}}, kj = tap - ki * {{kw}};
                    #pragma unroll
                    for (int j = 0; j < 2; j++) {
                        const int iy = iy0[j] + ki * {{dh}}, ix = ix0[j] + kj * {{dw}};
                        const bool in = pv[j] && iy >= 0 && iy < {{ih}} && ix >= 0 && ix < {{iw}};
                        bw_cp_async16(as_ + (stage * {{T}} + lr + 32 * j) * {{P}} + seg * 8, in ? xh + xbase[j] + ((i64)iy * {{iw}} + ix) * {{channels}} + cc : xh, in);
                        bw_cp_async16(bs_ + (stage * {{T}} + lr + 32 * j) * {{P}} + seg * 8, wh + (i64)(n0 + lr + 32 * j) * {{reduction}} + (i64)kc * {{SplitKConvChunk}} + seg * 8, true);
                    }
                };

                float acc[2][4][4];
                #pragma unroll
                for (int i = 0; i < 2; i++) {
                    #pragma unroll
                    for (int n = 0; n < 4; n++) { acc[i][n][0] = 0.f; acc[i][n][1] = 0.f; acc[i][n][2] = 0.f; acc[i][n][3] = 0.f; }
                }
                #pragma unroll
                for (int s = 0; s < {{S - 1}}; s++) {
                    if (s < count) load(kc0 + s, s);
                    bw_cp_async_commit();
                }

                // Warp tile: rows wm..wm+31, columns wn..wn+31. A: row lane & 15, k half lane >> 4; B (filter rows are
                // columns of the product): output channel lane & 7 (+ 8 for lanes 16-31), k half (lane >> 3) & 1.
                const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
                const int aoff = (wm + (lane & 15)) * {{P}} + (lane >> 4) * 8;
                const int boff = (wn + (lane >> 4) * 8 + (lane & 7)) * {{P}} + ((lane >> 3) & 1) * 8;
                for (int i = 0; i < count; i++) {
                    bw_cp_async_wait<{{S - 2}}>();
                    __syncthreads();
                    const int next = i + {{S - 1}};
                    if (next < count) load(kc0 + next, next % {{S}});
                    bw_cp_async_commit();
                    const unsigned short* const at = as_ + (i % {{S}}) * {{T * P}};
                    const unsigned short* const bt = bs_ + (i % {{S}}) * {{T * P}};
                    #pragma unroll
                    for (int ks = 0; ks < 2; ks++) {
                        unsigned af[2][4];
                        bw_ldsm_x4(af[0], at + aoff + ks * 16);
                        bw_ldsm_x4(af[1], at + aoff + 16 * {{P}} + ks * 16);
                        #pragma unroll
                        for (int np = 0; np < 2; np++) {
                            unsigned f[4];
                            bw_ldsm_x4(f, bt + boff + np * 16 * {{P}} + ks * 16);
                            #pragma unroll
                            for (int mi = 0; mi < 2; mi++) { bw_mma_16816(acc[mi][2 * np], af[mi], f[0], f[1]); bw_mma_16816(acc[mi][2 * np + 1], af[mi], f[2], f[3]); }
                        }
                    }
                }
                bw_cp_async_wait<0>();

                if ({{nSplits}} > 1) {
                    // Partial tiles [split][tile][8 fragments][128 threads] of float4: a warp's store is 512 contiguous bytes.
                    float4* const mine = (float4*)part + ((i64)split * {{tm}} * {{tn}} + tile) * {{SplitKPartialFloats / 4}} + tid;
                    #pragma unroll
                    for (int q = 0; q < 8; q++) mine[q * {{SplitKConvBlock}}] = make_float4(acc[q >> 2][q & 3][0], acc[q >> 2][q & 3][1], acc[q >> 2][q & 3][2], acc[q >> 2][q & 3][3]);
                    __threadfence();
                    __syncthreads();
                    if (tid == 0) last_ = atomicAdd(counters + {{cbase}} + tile, 1u) == (unsigned)({{nSplits}} - 1) ? 1u : 0u;
                    __syncthreads();
                    if (last_ == 0u) return;
                    __threadfence();
                    for (int s = 0; s < {{nSplits}}; s++) {
                        if (s == split) continue;
                        const float4* const other = (const float4*)part + ((i64)s * {{tm}} * {{tn}} + tile) * {{SplitKPartialFloats / 4}} + tid;
                        #pragma unroll
                        for (int q = 0; q < 8; q++) {
                            const float4 v = __ldcg(other + q * {{SplitKConvBlock}});
                            acc[q >> 2][q & 3][0] += v.x; acc[q >> 2][q & 3][1] += v.y; acc[q >> 2][q & 3][2] += v.z; acc[q >> 2][q & 3][3] += v.w;
                        }
                    }
                    if (tid == 0) counters[{{cbase}} + tile] = 0u;
                }

                // Out: accumulator e of n-tile n holds row g (+ 8 for e >= 2) of the m16 tile, channels 2t and 2t + 1.
                #pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    #pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int p = m0 + wm + mi * 16 + g + 8 * h;
                        if (p >= {{m}}) continue;
                        const i64 o = (i64)p * {{k}} + n0;
                        #pragma unroll
                        for (int nb = 0; nb < 4; nb++) {
                            const int n = wn + nb * 8 + 2 * t;
                            float v0 = acc[mi][nb][2 * h], v1 = acc[mi][nb][2 * h + 1];
                            {{finish}}
                            *(unsigned*)((unsigned short*)y + o + n) = bw_pack_half2(v0, v1);
                        }
                    }
                }

            """);
        var bias = epilogue.Bias is { } bt ? CType(bt) : "bw_half";
        var code = w.Build($"bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const {bias}* __restrict__ bias, const bw_half* __restrict__ z, float* __restrict__ part, unsigned* __restrict__ counters, {KernelWriter.ArgsParameter}");
        return code with { Source = AttentionHelpers + code.Source };
    }

    /// <summary>Threads to launch <see cref="SplitKConv"/> with: a block per (split, pixel tile, output-channel tile).</summary>
    public static long SplitKConvThreads(long pixels, long outChannels, int splits) =>
        ((pixels + SplitKConvTile - 1) / SplitKConvTile) * (outChannels / SplitKConvTile) * splits * SplitKConvBlock;

    /// <summary>Sets <paramref name="words"/> split-K counters to zero (a plan's first step where it has split-K convolutions).</summary>
    public static KernelCode SplitKCountersReset(long words)
    {
        var w = new KernelWriter(small: true);
        var n = w.I32("n", checked((int)words));
        w.Body.Append($$"""
                const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
                if (i < {{n}}) counters[i] = 0u;

            """);
        return w.Build($"unsigned* __restrict__ counters, {KernelWriter.ArgsParameter}");
    }
}
