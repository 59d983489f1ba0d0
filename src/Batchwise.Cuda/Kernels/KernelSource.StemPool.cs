namespace Batchwise.Cuda.Kernels;

/// <summary>A network's stem, convolution + ReLU + 3x3 max pooling, as one kernel (ResNet's first three layers).</summary>
internal static partial class KernelSource
{
    /// <summary>Shared memory of one <see cref="StemPool"/> block computing <paramref name="outChannels"/> channels (a channel split's share): the input ring, the filter, two rows of column maxima (double-buffered), the last convolution row, the bias.</summary>
    public static int StemPoolSharedBytes(int warps, long kernelHeight, long kernelWidth, int outChannels)
    {
        var rw = StemPattern.RowReduction(kernelWidth);
        return checked((2 * StemPattern.Ring * StemPattern.Slots(warps, rw) * 4) + (2 * outChannels * ((int)kernelHeight * rw + 8)) + (2 * 3 * 16 * warps * (outChannels + 8)) + (4 * outChannels));
    }

    /// <summary>
    /// Convolution (stride 2, no dilation, one group, at most <see cref="StemPattern.MaxChannels"/> input channels, a window
    /// of at most 10 rows x 8 columns) + bias + ReLU + MaxPool (3 x 3, stride 2, pads 1) in one kernel, reading
    /// the network's input as it is given (float32 or float16, NCHW) and writing the pooled result channels-last in half
    /// precision [N, PH, PW, K]: the convolution's output (4x the pooled one, ResNet's largest activation) never reaches
    /// memory, nor does a converted, padded copy of the input.
    /// <para>
    /// A block takes one image's band of pooled rows and walks down it. Each step computes two convolution rows across
    /// the whole width on tensor cores (mma.sync m16n8k16, a warp per 16 columns, both rows: m16 tiles of 16
    /// neighbouring output pixels of one row; the accumulators start from the bias). Each thread takes
    /// the maximum of its values over the pooling window's three rows: the two just computed and the second row of the
    /// step before, which it left in shared memory where only it reads it again (a thread holds the same columns and
    /// channels in both rows of every step; in registers it spilled: 96 bytes a thread at 128 registers). Only that
    /// row of column maxima goes to shared memory for the others (two buffers, so a step's pooling overlaps the next
    /// step's products), and the pooled row is the maximum of zero and three of its columns: the ReLU, taken once a
    /// pooled value (the maximum of ReLUs is the ReLU of the maximum), and a zero stands for the padding (it changes
    /// nothing a ReLU would not). Session 24's Nsight Compute profile of the
    /// first form (three rows in shared memory, nine loads a pooled value, an unsigned maximum in eight instructions,
    /// the bias read from global memory at every output) counted 1,856 instructions a warp a step of which 224 were
    /// the products. Input rows go into a ring of
    /// <see cref="StemPattern.Ring"/> rows as half, four channels a pixel (zeros past the image's channels), each pixel 8
    /// bytes; with stride 2 the 8 taps x 4 channels of one filter row read by output column x are the 32 halves at byte
    /// 16x of the row (the row stored from column -pad), so the im2col gather is one ldmatrix per 16 columns and k16
    /// step, and its 8 rows are 128 contiguous bytes (free of bank conflicts). A filter row's reduction is 32 halves (taps
    /// past the window and the fourth channel weigh zero): 7 x 32 for ResNet's 7 x 7 window over 3 channels, against
    /// 7 x 7 x 8 when the input is padded to 8 channels. The next step's 4 input rows are loaded into registers while this
    /// step computes and stored after it. Sizes are arguments; the warps, window, channels and output channels are the
    /// kernel's.
    /// </para>
    /// </summary>
    /// <para>
    /// A QDQ model's stem (<see cref="StemPattern.FindQuantized"/>) adds two things: <paramref name="inputRounding"/>, the
    /// input's QuantizeLinear and DequantizeLinear applied to each value as it goes into the ring (its load still in flight through
    /// the step before), and <paramref name="quantized"/>,
    /// which writes the pooled result as the int8 activation the next int8 convolution reads (the convolution's
    /// QuantizeLinear after the ReLU, the pooling's QuantizeLinear after that, stored less the uint8 shift). The maximum
    /// commutes with the monotonic rounding, so rounding the pooled maximum once is rounding every value before pooling.
    /// </para>
    public static KernelCode StemPool(Onnx.ElementType inputType, Onnx.ElementType? biasType, int channels, int outChannels, long kernelHeight, long kernelWidth, int warps, long batch, long[] inSpatial, long[] outSpatial, long[] pooled, long[] padsBegin, int bands, QuantRounding? inputRounding = null, StemPoolQuantized? quantized = null, int channelSplits = 1)
    {
        if (channels is < 1 or > StemPattern.MaxChannels || outChannels % 16 != 0 || outChannels is < 16 or > 64 || kernelWidth is < 1 or > StemPattern.MaxWindowColumns || kernelHeight is < 1 or > StemPattern.MaxWindowRows
            || warps != StemPattern.Warps(outSpatial[1]) || warps > StemPattern.MaxOutputColumns / 16 || bands < 1 || channelSplits < 1 || outChannels % (16 * channelSplits) != 0)
        {
            throw new ArgumentException("stem pool: 1 to 4 channels, 16 to 64 output channels in sixteens (each channel split's a multiple of 16), a window up to 10 x 8, up to 128 output columns");
        }

        // A block computes kc of the output channels: with channelSplits > 1 a band's channels are split over that many
        // blocks (each reads the band's input rows and its share of the filter), for more blocks where the bands are few.
        var kc = outChannels / channelSplits;

        var rw = StemPattern.RowReduction(kernelWidth);
        var js = rw / 16;
        var slots = StemPattern.Slots(warps, rw);
        if (!StemPattern.Fits(inSpatial[1], padsBegin[1], outSpatial[1], kernelWidth))
        {
            throw new ArgumentException("stem pool: the input row is wider than the kernel's ring row");
        }

        var threads = 32 * warps;
        var cols = 16 * warps;
        var (kh, nt) = ((int)kernelHeight, kc / 8);
        var filterRow = kh * rw;
        var fp = filterRow + 8;
        var cp = kc + 8;
        var ring = StemPattern.Ring * slots * 4;
        var pairs = ((channels * slots) + threads - 1) / threads;
        var w = new KernelWriter(small: true);
        var blocks = w.I64("blocks", batch * bands * channelSplits);
        var nbands = w.I32("bands", bands);
        var band = w.I32("band", checked((int)((pooled[0] + bands - 1) / bands)));
        var (ih, iw) = (w.I32("ih", checked((int)inSpatial[0])), w.I32("iw", checked((int)inSpatial[1])));
        var (oh, ow) = (w.I32("oh", checked((int)outSpatial[0])), w.I32("ow", checked((int)outSpatial[1])));
        var (ph, pw) = (w.I32("ph", checked((int)pooled[0])), w.I32("pw", checked((int)pooled[1])));
        var (pt, pl) = (w.I32("pt", checked((int)padsBegin[0])), w.I32("pl", checked((int)padsBegin[1])));
        // The input's rounding (a QDQ stem) is applied as a row goes into the ring, not as it is fetched: the loads then
        // stay in flight through the step's products (the rounding of a value would wait for its load at the fetch). A
        // zero outside the image rounds to zero (its QuantizeLinear gives the zero point).
        var read = $"(float)xg[go[u] + (i64)iy * {iw}]";
        var stored = inputRounding is { } rounding ? rounding.ApplyByReciprocal("pre[r][u]") : "pre[r][u]";
        var at = $"((img * {ph} + p) * {pw} + q) * {outChannels} + ch0 + c8";
        var store = quantized is { } qo
            ? $$"""
                const bw_half* const hb = (const bw_half*)&best;
                                        unsigned char ob[8];
                                        #pragma unroll
                                        for (int e = 0; e < 8; e++) ob[e] = (unsigned char){{qo.StoredBits("(float)hb[e]")}};
                                        *(uint2*)(y + {{at}}) = *(const uint2*)ob;
                """
            : $"*(uint4*)((unsigned short*)y + {at}) = best;";
        w.Body.Append($$"""
                extern __shared__ __align__(16) unsigned short bw_dynamic_shared[];
                unsigned short* const xs = bw_dynamic_shared;          // [{{StemPattern.Ring}}][{{slots}}][4] input rows (ring)
                unsigned short* const fs = xs + {{ring}};                // [{{kc}}][{{fp}}] filter (this block's channels)
                unsigned short* const cs = fs + {{kc * fp}};    // [2][{{cols}}][{{cp}}] column maxima over a pooling window's rows
                unsigned short* const ps = cs + {{2 * cols * cp}};        // [{{cols}}][{{cp}}] the last convolution row, each thread's own
                float* const bs = (float*)(ps + {{cols * cp}});           // [{{kc}}] bias
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                if ((i64)blockIdx.x >= {{blocks}}) return;
                const int ch0 = (int)(blockIdx.x % {{channelSplits}}u) * {{kc}};
                const unsigned band_block = blockIdx.x / {{channelSplits}}u;
                const int bnd = (int)(band_block % (unsigned){{nbands}});
                const i64 img = band_block / (unsigned){{nbands}};
                const int py0 = bnd * {{band}}, py1 = py0 + {{band}} < {{ph}} ? py0 + {{band}} : {{ph}};
                if (py0 >= py1) return;

                // The filter (cp.async), and the ring zeroed: pad columns and the fourth channel stay zero.
                const unsigned short* const wg = (const unsigned short*)wt;
                for (int i = tid; i < {{kc * filterRow / 8}}; i += {{threads}}) {
                    const int r = i / {{filterRow / 8}}, col = (i - r * {{filterRow / 8}}) * 8;
                    bw_cp_async16(fs + r * {{fp}} + col, wg + (ch0 + r) * {{filterRow}} + col, true);
                }
                bw_cp_async_commit();
                for (int i = tid; i < {{ring / 8}}; i += {{threads}}) { uint4 z; z.x = 0u; z.y = 0u; z.z = 0u; z.w = 0u; ((uint4*)xs)[i] = z; }
                for (int i = tid; i < {{kc}}; i += {{threads}}) bs[i] = {{(biasType is null ? "0.f" : "(float)bias[ch0 + i]")}};
                __syncthreads();

                // This thread's (channel, column) pairs of an input row: where they are in the image and in a ring row.
                const {{CType(inputType)}}* const xg = x + img * {{channels}} * {{ih}} * {{iw}};
                int go[{{pairs}}], so[{{pairs}}];
                #pragma unroll
                for (int u = 0; u < {{pairs}}; u++) {
                    const int i = tid + u * {{threads}}, c = i / {{iw}}, ix = i - c * {{iw}};
                    go[u] = c < {{channels}} ? c * {{ih}} * {{iw}} + ix : -1;
                    so[u] = (ix + {{pl}}) * 4 + c;
                }
                float pre[4][{{pairs}}];
                auto fetch = [&](int from) {
                    #pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const int iy = from + r;
                        #pragma unroll
                        for (int u = 0; u < {{pairs}}; u++) pre[r][u] = go[u] >= 0 && iy >= 0 && iy < {{ih}} ? {{read}} : 0.f;
                    }
                };
                auto place = [&](int from) {
                    #pragma unroll
                    for (int r = 0; r < 4; r++) {
                        unsigned short* const row = xs + ((from + r) & {{StemPattern.Ring - 1}}) * {{slots * 4}};
                        #pragma unroll
                        for (int u = 0; u < {{pairs}}; u++) if (go[u] >= 0) ((bw_half*)row)[so[u]] = bw_half({{stored}});
                    }
                };

                // Step s computes convolution rows ra = 2 (py0 + s) - 2 and ra + 1 from input rows [2 ra - pt, 2 ra + 2 - pt + {{kh}}),
                // then pools row py0 + s - 1 from rows ra - 1 (the step before), ra and ra + 1. The first step's rows: in blocks of 4.
                const int first = 2 * (2 * py0 - 2) - {{pt}};
                for (int from = first; from < first + {{kh + 2}}; from += 4) { fetch(from); place(from); }
                const int ahead = first + {{kh + 2}};
                fetch(ahead);
                bw_cp_async_wait<0>();
                __syncthreads();

                const int xcol = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                const unsigned short* const arow = xs + xcol * 8 + (lane >> 4) * 8;
                const unsigned short* const brow = fs + (lane & 7) * {{fp}} + ((lane >> 3) & 1) * 8;
                for (int s = 0; s <= py1 - py0; s++) {
                    const int ra = 2 * (py0 + s) - 2;
                    float acc[2][{{nt}}][4];
                    #pragma unroll
                    for (int n = 0; n < {{nt}}; n++) {
                        const float2 b2 = *(const float2*)(bs + n * 8 + 2 * t);
                        #pragma unroll
                        for (int m = 0; m < 2; m++) { acc[m][n][0] = b2.x; acc[m][n][1] = b2.y; acc[m][n][2] = b2.x; acc[m][n][3] = b2.y; }
                    }
                    #pragma unroll
                    for (int ki = 0; ki < {{kh}}; ki++) {
                        const int r0 = ((2 * ra - {{pt}} + ki) & {{StemPattern.Ring - 1}}) * {{slots * 4}}, r1 = ((2 * ra + 2 - {{pt}} + ki) & {{StemPattern.Ring - 1}}) * {{slots * 4}};
                        #pragma unroll
                        for (int j = 0; j < {{js}}; j++) {
                            unsigned a0[4], a1[4];
                            bw_ldsm_x4(a0, arow + r0 + j * 16);
                            bw_ldsm_x4(a1, arow + r1 + j * 16);
                            #pragma unroll
                            for (int np = 0; np < {{nt / 2}}; np++) {
                                unsigned f[4];
                                bw_ldsm_x4(f, brow + (np * 16 + (lane >> 4) * 8) * {{fp}} + ki * {{rw}} + j * 16);
                                bw_mma_16816(acc[0][2 * np], a0, f[0], f[1]); bw_mma_16816(acc[0][2 * np + 1], a0, f[2], f[3]);
                                bw_mma_16816(acc[1][2 * np], a1, f[0], f[1]); bw_mma_16816(acc[1][2 * np + 1], a1, f[2], f[3]);
                            }
                        }
                    }

                    // The next step's input rows (fetched during this one) go into ring slots no warp reads in this step.
                    place(ahead + 4 * s);
                    fetch(ahead + 4 * s + 4);

                    // The maximum over rows ra - 1 (this thread's own values, kept in shared memory), ra and ra + 1, as
                    // the products give them (rows and columns outside the output are zeros, the pooling's padding);
                    // that row of column maxima goes to this step's buffer. The ReLU is the pooled maximum's start at
                    // zero below: the maximum of ReLUs is the ReLU of the maximum, and a zero for the padding changes
                    // neither (a maximum per value here took 64 instructions a thread a step).
                    unsigned short* const crow = cs + (s & 1) * {{cols * cp}};
                    const bool in0 = ra >= 0 && ra < {{oh}}, in1 = ra + 1 >= 0 && ra + 1 < {{oh}};
                    #pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int xo = warp * 16 + g + h * 8;
                        const bool col = xo < {{ow}};
                        #pragma unroll
                        for (int nb = 0; nb < {{nt}}; nb++) {
                            const unsigned v0 = in0 && col ? bw_pack_half2(acc[0][nb][2 * h], acc[0][nb][2 * h + 1]) : 0u;
                            const unsigned v1 = in1 && col ? bw_pack_half2(acc[1][nb][2 * h], acc[1][nb][2 * h + 1]) : 0u;
                            // Row ra - 1 as this thread left it in the step before (unread at the first step: no pooling then).
                            unsigned* const last = (unsigned*)(ps + xo * {{cp}} + nb * 8 + 2 * t);
                            const unsigned above = *last;
                            *last = v1;
                            *(unsigned*)(crow + xo * {{cp}} + nb * 8 + 2 * t) = bw_hmax2(above, bw_hmax2(v0, v1));
                        }
                    }
                    __syncthreads();

                    // Pooled row py0 + s - 1: the maximum of zero (the ReLU) and three columns of column maxima. The next step
                    // writes the other buffer, so no barrier follows: its barrier comes after every thread has pooled.
                    if (s > 0) {
                        const int p = py0 + s - 1;
                        for (int i = tid; i < {{pw}} * {{kc / 8}}; i += {{threads}}) {
                            const int q = i / {{kc / 8}}, c8 = (i - q * {{kc / 8}}) * 8;
                            uint4 best; best.x = 0u; best.y = 0u; best.z = 0u; best.w = 0u;
                            #pragma unroll
                            for (int dx = 0; dx < 3; dx++) {
                                const int xo = 2 * q - 1 + dx;
                                if (xo < 0 || xo >= {{cols}}) continue;
                                const uint4 v = *(const uint4*)(crow + xo * {{cp}} + c8);
                                best.x = bw_hmax2(best.x, v.x); best.y = bw_hmax2(best.y, v.y); best.z = bw_hmax2(best.z, v.z); best.w = bw_hmax2(best.w, v.w);
                            }
                            {{store}}
                        }
                    }
                }

            """);
        var biasParameter = biasType is { } bt ? CType(bt) : "bw_half";
        var code = w.Build($"{(quantized is null ? "bw_half" : "signed char")}* __restrict__ y, const {CType(inputType)}* __restrict__ x, const bw_half* __restrict__ wt, const {biasParameter}* __restrict__ bias, {KernelWriter.ArgsParameter}");
        const string Umax = """
            #ifndef BW_STEM_HELPERS
            #define BW_STEM_HELPERS
            __device__ __forceinline__ unsigned bw_hmax2(unsigned a, unsigned b)
            {
                unsigned r;
                asm("max.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
                return r;
            }
            #endif

            """;
        // Two blocks an SM (the shared memory allows two of ResNet's): at most 65,536 / (2 x threads) registers a thread.
        var source = code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __launch_bounds__({threads}, 2) ", StringComparison.Ordinal);
        return code with { Source = AttentionHelpers + Umax + (inputRounding is null && quantized is null ? string.Empty : QuotientHelper) + source, SharedBytes = StemPoolSharedBytes(warps, kernelHeight, kernelWidth, kc) };
    }

    /// <summary>
    /// The int8 output of a QDQ stem (<see cref="StemPool"/>): the convolution's QuantizeLinear after the ReLU
    /// (<paramref name="Conv"/>), then, where the pooling's QuantizeLinear differs from it, its DequantizeLinear and the
    /// pooling's (<paramref name="Pool"/>); stored as the int8 byte of the value less <paramref name="Shift"/> (128 for uint8).
    /// </summary>
    public readonly record struct StemPoolQuantized(QuantRounding Conv, QuantRounding Pool, int Shift)
    {
        /// <summary>
        /// The stored byte of the pooled maximum <paramref name="v"/> as the low byte of an unsigned expression: one rounding
        /// (<see cref="QuantRounding.StoredBits"/>) where the pooling's QuantizeLinear is the convolution's, else the
        /// convolution's applied (<see cref="QuantRounding.ApplyByReciprocal"/>) and the pooling's stored.
        /// </summary>
        public string StoredBits(string v) => Pool == Conv ? Conv.StoredBits(v, Shift) : Pool.StoredBits(Conv.ApplyByReciprocal(v), Shift);
    }

    /// <summary>Threads to launch <see cref="StemPool"/> with: a block of 32 x warps threads per (image, band, channel split).</summary>
    public static long StemPoolThreads(long batch, int bands, int warps, int channelSplits = 1) => batch * bands * channelSplits * 32L * warps;

    /// <summary>
    /// Bands of pooled rows per image for <see cref="StemPool"/>: enough blocks for about four per SM (each band's first
    /// step computes a row it only borrows), at most one band per pooled row.
    /// </summary>
    public static int StemPoolBands(long batch, long pooledHeight, int multiprocessors) =>
        (int)Math.Clamp(((4L * multiprocessors) + batch - 1) / batch, 1, pooledHeight);
}
