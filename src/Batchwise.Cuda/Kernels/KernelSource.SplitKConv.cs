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

    /// <summary>The shared-memory stages of the cp.async pipeline by default (a split's every step in flight where it has no more).</summary>
    public const int SplitKStages = 8;

    /// <summary>The most stages a kernel takes.</summary>
    public const int SplitKMaxStages = 16;

    /// <summary>Shared-memory pitch of a tile row (halves): 32 + 8, an odd number of 16-byte units (conflict-free ldmatrix).</summary>
    private const int SplitKPitch = 40;

    /// <summary>The most splits by default: a thread-block cluster's portable size (the splits of a tile are one cluster).</summary>
    public const int PortableClusterSize = 8;

    /// <summary>The most splits a kernel takes: sm_90's largest (non-portable) cluster.</summary>
    public const int SplitKMaxSplits = 16;

    /// <summary>The blocks of one cluster a kernel's source fixes (its <c>__cluster_dims__</c>), 1 for none.</summary>
    public static int ClusterSize(string source)
    {
        var at = source.IndexOf("__cluster_dims__(", StringComparison.Ordinal);
        if (at < 0)
        {
            return 1;
        }

        at += "__cluster_dims__(".Length;
        return int.Parse(source.AsSpan(at, source.IndexOf(',', at) - at), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Row pitch (floats) of the partial tile each block leaves in its shared memory for the cluster's reduction.</summary>
    private const int SplitKPartialPitch = 68;

    /// <summary>Floats of one block's partial tile (what the CPU test runner keeps per block when it emulates the cluster).</summary>
    public const int SplitKPartialFloats = SplitKConvTile * SplitKPartialPitch;

    /// <summary>Shared memory of one block: <paramref name="stages"/> stages of an input and a filter tile (the partial tile reuses it).</summary>
    public static int SplitKConvSharedBytes(int stages) => Math.Max(stages * 2 * SplitKConvTile * SplitKPitch * 2, SplitKPartialFloats * 4);

    /// <summary>The pipeline's stages for a split of <paramref name="perSplit"/> steps: one more than its steps (all in flight) up to <paramref name="most"/>, at least 2.</summary>
    public static int SplitKConvStages(int perSplit, int most = SplitKStages) => Math.Clamp(perSplit + 1, 2, Math.Min(most, SplitKMaxStages));

    /// <summary>
    /// How a dense convolution of <paramref name="pixels"/> output pixels (batch x output positions), <paramref name="outChannels"/>
    /// output channels and a reduction of <paramref name="chunks"/> steps of <see cref="SplitKConvChunk"/> channels is split
    /// over <paramref name="multiprocessors"/> SMs: (splits, steps per split), at least <paramref name="fewest"/> splits
    /// (the grid unsplit fills at most a half of the device for 2) and at most <paramref name="most"/>, each split at least
    /// 4 steps long and none empty; null where a split would not pay (the tiles alone fill the device, or the reduction is
    /// too short to share).
    /// </summary>
    public static (int Splits, int PerSplit)? SplitKConvSplits(long pixels, long outChannels, long chunks, int multiprocessors, int most = PortableClusterSize, int fewest = 2)
    {
        var tiles = ((pixels + SplitKConvTile - 1) / SplitKConvTile) * (outChannels / SplitKConvTile);
        if (tiles < 1 || chunks < 8)
        {
            return null;
        }

        var splits = Math.Min(Math.Min(Math.Min(most, SplitKMaxSplits), multiprocessors / tiles), chunks / 4);
        if (splits < Math.Max(2, fewest))
        {
            return null;
        }

        var perSplit = (chunks + splits - 1) / splits;
        return ((int)((chunks + perSplit - 1) / perSplit), (int)perSplit);
    }

    /// <summary>
    /// What a thread-block cluster kernel needs besides the attention helpers: its rank's partial tile, a peer's tile
    /// through distributed shared memory (mapa), the cluster barrier. The CPU test runner defines its own (blocks run one
    /// at a time there, so it runs the grid twice: every block's products first, then every block's reduction).
    /// </summary>
    private const string ClusterHelpers = """
        #ifndef BW_CLUSTER_HELPERS
        #define BW_CLUSTER_HELPERS
        __device__ __forceinline__ bool bw_cluster_computes() { return true; }
        __device__ __forceinline__ bool bw_cluster_reduces() { return true; }
        __device__ __forceinline__ void bw_cluster_sync() { asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory"); }
        __device__ __forceinline__ float* bw_cluster_tile(float* own) { return own; }
        __device__ __forceinline__ const float* bw_cluster_peer(const float* mine, unsigned self, unsigned rank)
        {
            const float* r;
            asm volatile("mapa.u64 %0, %1, %2;" : "=l"(r) : "l"(mine), "r"(rank));
            return r;
        }
        #endif

        """;

    /// <summary>
    /// A dense 2-d convolution in channels-last half precision, x [N, H, W, C] (C a multiple of 32), filter [K, kh, kw, C]
    /// (KRSC, K a multiple of 64), y [N, OH, OW, K]: an implicit GEMM (M = output pixels, N = output channels, reduction =
    /// taps x channels) on tensor cores (mma.sync m16n8k16, half inputs, float accumulation). A block computes a 64 x 64
    /// tile over its share of the reduction (<paramref name="perSplit"/> steps of one tap's 32 channels), streaming input
    /// rows (gathered per tap, zero outside the image: the im2col costs nothing) and filter rows through up to
    /// <see cref="SplitKMaxStages"/> cp.async stages into ldmatrix. The <paramref name="splits"/> blocks of a tile are one
    /// thread-block cluster (sm_90): each leaves its float partial tile in its shared memory, and after the cluster's
    /// barrier block r sums rows r, r + splits, ... of every block's tile through distributed shared memory, in rank
    /// order (the same sums run after run), adds the bias, the residual and the ReLU (<paramref name="epilogue"/>, as
    /// <see cref="GroupedConv"/>'s) and writes them. Taps, strides, dilations, channels, splits and stages are part of the
    /// kernel; sizes are arguments. With one split (BATCHWISE_SPLITK_CONV=every, where a split does not pay) the kernel
    /// is no cluster: the block sums its own tile, read from its own shared memory.
    /// </summary>
    /// <para>
    /// With <paramref name="shortcut"/> the reduction goes on past the window's taps into a second input: a residual
    /// block's projection shortcut (a 1x1 convolution of x2 [N, H2, W2, C2] at its stride, no padding, filter [K, C2]),
    /// whose sum the block adds to this convolution's before the ReLU. Both products land in one accumulator, so the
    /// shortcut's output never reaches memory; the epilogue's bias is both biases' sum.
    /// </para>
    public static KernelCode SplitKConv(long channels, long[] kernel, long[] strides, long[] dilations, GroupedConvEpilogue epilogue, long batch, long outChannels, long[] inSpatial, long[] outSpatial, long[] padsBegin, int splits, int perSplit, int stages, SplitKShortcut? shortcut = null)
    {
        if (channels % SplitKConvChunk != 0 || outChannels % SplitKConvTile != 0 || kernel.Length != 2 || splits is < 1 or > SplitKMaxSplits || perSplit < 1 || stages is < 2 or > SplitKMaxStages)
        {
            throw new ArgumentException("split-K conv: input channels a multiple of 32, output channels of 64, a 2-d window, 1 to 16 splits, 2 to 16 stages");
        }

        if (shortcut is not null && (shortcut.Channels % SplitKConvChunk != 0 || shortcut.Stride < 1 || epilogue.Residual || shortcut.InputSpatial.Length != 2))
        {
            throw new ArgumentException("split-K conv: a shortcut of channels in 32s, a positive stride and a 2-d input, and no residual besides");
        }

        var perTap = channels / SplitKConvChunk;
        var windowChunks = kernel[0] * kernel[1] * perTap;
        var chunks = windowChunks + ((shortcut?.Channels ?? 0) / SplitKConvChunk);
        var reduction = kernel[0] * kernel[1] * channels;
        var pixels = batch * outSpatial[0] * outSpatial[1];
        var tilesN = outChannels / SplitKConvTile;
        var shared = SplitKConvSharedBytes(stages);
        var dynamic = shared > StaticSharedBytes;
        var w = new KernelWriter(small: true) { PlacesPdlEnter = true };
        var m = w.I32("m", checked((int)pixels));
        var k = w.I32("k", checked((int)outChannels));
        var tn = w.I32("tiles_n", checked((int)tilesN));
        var per = w.I32("per_split", perSplit);
        var (ih, iw) = (w.I32("ih", checked((int)inSpatial[0])), w.I32("iw", checked((int)inSpatial[1])));
        var (oh, ow) = (w.I32("oh", checked((int)outSpatial[0])), w.I32("ow", checked((int)outSpatial[1])));
        var (ph, pw) = (w.I32("ph", checked((int)padsBegin[0])), w.I32("pw", checked((int)padsBegin[1])));
        var (kw, sh, sw, dh, dw) = (kernel[1], strides[0], strides[1], dilations[0], dilations[1]);
        const int T = SplitKConvTile, P = SplitKPitch, PP = SplitKPartialPitch;
        var S = stages;

        var finish = epilogue.Text(["v[0]", "v[1]", "v[2]", "v[3]"], "n", "o + n");

        // The shortcut's input and filter rows, past the window's chunks.
        var (shortcutBase, shortcutInput, shortcutFilter) = (string.Empty, string.Empty, string.Empty);
        if (shortcut is { } sc)
        {
            var (ih2, iw2) = (w.I32("ih2", checked((int)sc.InputSpatial[0])), w.I32("iw2", checked((int)sc.InputSpatial[1])));
            shortcutBase = $$"""
                        i64 xbase2[2];
                        #pragma unroll
                        for (int j = 0; j < 2; j++) {
                            const int pp = pv[j] ? m0 + lr + 32 * j : 0, ohw = {{oh}} * {{ow}};
                            const int img = pp / ohw, rem = pp - img * ohw, oy = rem / {{ow}}, ox = rem - oy * {{ow}};
                            xbase2[j] = (((i64)img * {{ih2}} + (i64)oy * {{sc.Stride}}) * {{iw2}} + (i64)ox * {{sc.Stride}}) * {{sc.Channels}} + seg * 8;
                        }
                        const unsigned short* const x2h = (const unsigned short*)x2;
                        const unsigned short* const w2h = (const unsigned short*)wt2;
                """;
            shortcutInput = $$"""
                            if (kc >= {{windowChunks}}) {
                                const int cc = (kc - {{windowChunks}}) * {{SplitKConvChunk}};
                                #pragma unroll
                                for (int j = 0; j < 2; j++) bw_cp_async16(as_ + (stage * {{T}} + lr + 32 * j) * {{P}} + seg * 8, pv[j] ? x2h + xbase2[j] + cc : x2h, pv[j]);
                                return;
                            }
                """;
            shortcutFilter = $$"""
                            if (kc >= {{windowChunks}}) {
                                #pragma unroll
                                for (int j = 0; j < 2; j++) bw_cp_async16(bs_ + (stage * {{T}} + lr + 32 * j) * {{P}} + seg * 8, w2h + (i64)(n0 + lr + 32 * j) * {{sc.Channels}} + (i64)(kc - {{windowChunks}}) * {{SplitKConvChunk}} + seg * 8, true);
                                return;
                            }
                """;
        }

        w.Body.Append(SharedHalves(shared));
        w.Body.Append($$"""
                unsigned short* const as_ = sm_;
                unsigned short* const bs_ = sm_ + {{S * T * P}};
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                // Block order: split fastest (a tile's splits are one cluster), then output-channel tile, then pixel tile.
                const int split = (int)blockIdx.x % {{splits}}, tile = (int)blockIdx.x / {{splits}};
                const int tcol = tile % {{tn}}, trow = tile / {{tn}};
                const int m0 = trow * {{T}}, n0 = tcol * {{T}};
                const int kc0 = split * {{per}};
                const int count = {{chunks}} - kc0 < {{per}} ? {{chunks}} - kc0 : {{per}};
                const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;

                float acc[2][4][4];
                #pragma unroll
                for (int i = 0; i < 2; i++) {
                    #pragma unroll
                    for (int n = 0; n < 4; n++) { acc[i][n][0] = 0.f; acc[i][n][1] = 0.f; acc[i][n][2] = 0.f; acc[i][n][3] = 0.f; }
                }
                if (bw_cluster_computes()) {
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
            {{shortcutBase}}
                    auto loadInput = [&](int kc, int stage) {
            {{shortcutInput}}
                        const int tap = kc / {{perTap}}, cc = (kc - tap * {{perTap}}) * {{SplitKConvChunk}};
                        const int ki = tap / {{kw}}, kj = tap - ki * {{kw}};
                        #pragma unroll
                        for (int j = 0; j < 2; j++) {
                            const int iy = iy0[j] + ki * {{dh}}, ix = ix0[j] + kj * {{dw}};
                            const bool in = pv[j] && iy >= 0 && iy < {{ih}} && ix >= 0 && ix < {{iw}};
                            bw_cp_async16(as_ + (stage * {{T}} + lr + 32 * j) * {{P}} + seg * 8, in ? xh + xbase[j] + ((i64)iy * {{iw}} + ix) * {{channels}} + cc : xh, in);
                        }
                    };
                    auto loadFilter = [&](int kc, int stage) {
            {{shortcutFilter}}
                        #pragma unroll
                        for (int j = 0; j < 2; j++) bw_cp_async16(bs_ + (stage * {{T}} + lr + 32 * j) * {{P}} + seg * 8, wh + (i64)(n0 + lr + 32 * j) * {{reduction}} + (i64)kc * {{SplitKConvChunk}} + seg * 8, true);
                    };
                    auto load = [&](int kc, int stage) { loadInput(kc, stage); loadFilter(kc, stage); };

                    // The filter is a constant: its first stages are fetched before the kernel waits for the kernel before
                    // it (bw_pdl_enter; with programmatic dependent launch their latency overlaps that kernel's end). They
                    // join the first stage's group of copies, which the first step waits for.
                    #pragma unroll
                    for (int s = 0; s < {{S - 1}}; s++) {
                        if (s < count) loadFilter(kc0 + s, s);
                    }
                    bw_pdl_enter();
                    #pragma unroll
                    for (int s = 0; s < {{S - 1}}; s++) {
                        if (s < count) loadInput(kc0 + s, s);
                        bw_cp_async_commit();
                    }

                    // Warp tile: rows wm..wm+31, columns wn..wn+31. A: row lane & 15, k half lane >> 4; B (filter rows
                    // are columns of the product): output channel lane & 7 (+ 8 for lanes 16-31), k half (lane >> 3) & 1.
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
                } else {
                    bw_pdl_enter();
                }
                __syncthreads();

                // The partial tile [64][{{PP}}] floats over the stages' memory: accumulator e of n-tile nb holds row g (+ 8
                // for e >= 2) of the m16 tile, columns 2t and 2t + 1.
                float* const part = bw_cluster_tile((float*)sm_);
                if (bw_cluster_computes()) {
                    #pragma unroll
                    for (int mi = 0; mi < 2; mi++) {
                        #pragma unroll
                        for (int nb = 0; nb < 4; nb++) {
                            const int r = wm + mi * 16 + g, c = wn + nb * 8 + 2 * t;
                            *(float2*)(part + r * {{PP}} + c) = make_float2(acc[mi][nb][0], acc[mi][nb][1]);
                            *(float2*)(part + (r + 8) * {{PP}} + c) = make_float2(acc[mi][nb][2], acc[mi][nb][3]);
                        }
                    }
                }
                {{(splits > 1 ? "bw_cluster_sync();" : "__syncthreads();")}}

                // This block's rows of the tile (split, split + splits, ...), four channels a thread at a time: the
                // partials summed in rank order, then the epilogue.
                if (bw_cluster_reduces()) {
                    const int rows = ({{T}} - split + {{splits - 1}}) / {{splits}};
                    for (int i = tid; i < rows * 16; i += {{SplitKConvBlock}}) {
                        const int row = split + (i >> 4) * {{splits}}, c4 = (i & 15) * 4;
                        const int p = m0 + row;
                        if (p >= {{m}}) continue;
                        float v[4] = {0.f, 0.f, 0.f, 0.f};
                        #pragma unroll
                        for (int q = 0; q < {{splits}}; q++) {
                            const float4 u = *(const float4*)({{(splits > 1 ? "bw_cluster_peer(part, (unsigned)split, (unsigned)q)" : "part")}} + row * {{PP}} + c4);
                            v[0] += u.x; v[1] += u.y; v[2] += u.z; v[3] += u.w;
                        }
                        const i64 o = (i64)p * {{k}};
                        const int n = n0 + c4;
                        {{finish}}
                        *(uint2*)((unsigned short*)y + o + n) = make_uint2(bw_pack_half2(v[0], v[1]), bw_pack_half2(v[2], v[3]));
                    }
                }
                {{(splits > 1 ? "bw_cluster_sync(); // no block leaves while another still reads its tile" : "")}}

            """);
        var bias = epilogue.Bias is { } bt ? CType(bt) : "bw_half";
        var shortcutParameters = shortcut is null ? string.Empty : "const bw_half* __restrict__ x2, const bw_half* __restrict__ wt2, ";
        var code = w.Build($"bw_half* __restrict__ y, const bw_half* __restrict__ x, const bw_half* __restrict__ wt, const {bias}* __restrict__ bias, const bw_half* __restrict__ z, {shortcutParameters}{KernelWriter.ArgsParameter}");
        var source = splits > 1 ? code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __cluster_dims__({splits}, 1, 1) ", StringComparison.Ordinal) : code.Source;
        return code with { Source = AttentionHelpers + ClusterHelpers + source, SharedBytes = dynamic ? shared : 0 };
    }

    /// <summary>
    /// The declaration of a block's shared memory as <c>sm_</c>, 16-bit units: static up to the 48 KB a kernel may declare,
    /// dynamic (launched with <see cref="KernelCode.SharedBytes"/>) beyond.
    /// </summary>
    private static string SharedHalves(int bytes) => bytes > StaticSharedBytes
        ? """
                extern __shared__ __align__(16) unsigned short bw_dynamic_shared[];
                unsigned short* const sm_ = bw_dynamic_shared;

            """
        : $"""
                __shared__ __align__(16) unsigned short sm_[{bytes / 2}];

            """;

    /// <summary>Threads to launch <see cref="SplitKConv"/> with: a block per (pixel tile, output-channel tile, split), exactly (a cluster's blocks all run).</summary>
    public static long SplitKConvThreads(long pixels, long outChannels, int splits) =>
        ((pixels + SplitKConvTile - 1) / SplitKConvTile) * (outChannels / SplitKConvTile) * splits * SplitKConvBlock;
}

/// <summary>
/// A residual block's projection shortcut computed in its block end's <see cref="KernelSource.SplitKConv"/>: a 1x1
/// convolution of an input with <paramref name="Channels"/> channels and spatial size <paramref name="InputSpatial"/>
/// at <paramref name="Stride"/>, no padding.
/// </summary>
internal sealed record SplitKShortcut(long Channels, long Stride, long[] InputSpatial);
