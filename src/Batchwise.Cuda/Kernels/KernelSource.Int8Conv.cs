using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>What follows an int8 convolution's sums in <see cref="KernelSource.Int8Conv"/>'s epilogue.</summary>
/// <param name="OutType">The QuantizeLinear's output type (uint8 or int8): its range is the saturation.</param>
/// <param name="OutZero">The output's zero point as ONNX gives it (added after rounding).</param>
/// <param name="Relu">A ReLU on the float value before the rounding.</param>
/// <param name="Residual">
/// An int8 residual added before the ReLU: its stored byte times Scale plus Offset (its zero point's share), the
/// convolution's value first clamped to [Low, High] (its own QuantizeLinear's saturation, in output steps: the fused
/// block skips only that QuantizeLinear's rounding); null for none.
/// </param>
/// <param name="Silu">
/// A SiLU after the convolution's QuantizeLinear (<see cref="OutType"/> and <see cref="OutZero"/> are that one's): the
/// value rounded and saturated as it, dequantized, times its sigmoid (itself rounded through a quantization where the
/// model has one), quantized again as the SiLU's QuantizeLinear; null for none.
/// </param>
/// <param name="Clamp">
/// Bounds on the convolution's value in output steps (real value / output scale), applied first: a folded
/// QuantizeLinear's saturation or a Clip's bound that the output's saturation does not give (<see cref="Planning.Int8Layer.Clamp"/>); an
/// infinite side is not applied; null for none.
/// </param>
internal sealed record Int8ConvEpilogue(ElementType OutType, double OutZero, bool Relu, (double Scale, double Offset, double Low, double High)? Residual = null, Int8SiluEpilogue? Silu = null, (double Low, double High)? Clamp = null)
{
    /// <summary>What is subtracted from the saturated value to store it as int8: 128 for uint8.</summary>
    public int Shift => KernelSource.StoredShift(OutType);

    /// <summary>
    /// What a kernel adds to each channel's offset before <see cref="KernelSource.Int8Requantize"/>'s statements: the
    /// output's zero point less <see cref="Shift"/>, plus the residual's offset (once a channel, not once a value).
    /// </summary>
    public double Folded => OutZero - Shift + (Residual?.Offset ?? 0);
}

/// <summary>
/// A SiLU and its QuantizeLinear in an int8 convolution's epilogue: x·sigmoid(x) of the convolution's dequantized
/// output (scale <paramref name="YScale"/>), the sigmoid optionally through its own quantization
/// (<paramref name="Sigmoid"/>: scale, zero point and type), quantized with <paramref name="OutScale"/>,
/// <paramref name="OutZero"/> and <paramref name="OutType"/>.
/// </summary>
internal sealed record Int8SiluEpilogue(double YScale, (double Scale, double Zero, ElementType Type)? Sigmoid, double OutScale, double OutZero, ElementType OutType)
{
    /// <summary>What is subtracted from the SiLU's quantized value to store it as int8: 128 for uint8.</summary>
    public int Shift => KernelSource.StoredShift(OutType);
}

/// <summary>
/// Dense int8 convolutions in channels-last layout on tensor cores (mma.sync m16n8k32, int8 inputs, int32 sums), the
/// requantization, the residual and the ReLU in the epilogue: the QDQ model's int8 layers without cuDNN's
/// runtime-compiled engines.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="Int8Conv"/>: four warps, a 2 x 2 grid of warp tiles.</summary>
    public const int Int8ConvBlock = 128;

    /// <summary>Input channels (bytes) of one step of the reduction: one tap's 64 channels, two k32 products.</summary>
    public const int Int8ConvChunk = 64;

    /// <summary>Shared-memory pitch of a tile row in 16-bit units: 64 bytes + 16, an odd number of 16-byte units (conflict-free ldmatrix).</summary>
    private const int Int8ConvPitch = 40;

    /// <summary>The tiles (output pixels x output channels) the kernel is written for, largest first.</summary>
    public static readonly (int M, int N)[] Int8ConvTiles = [(128, 128), (128, 64), (64, 64)];

    /// <summary>Shared memory of one block: the stages of an input and a filter tile, or half the int32 tile the epilogue reads (over the stages).</summary>
    public static int Int8ConvSharedBytes(int tileM, int tileN, int stages) =>
        Math.Max(stages * (tileM + tileN) * Int8ConvPitch * 2, tileM / 2 * (tileN + 8) * 4);

    /// <summary>Threads to launch <see cref="Int8Conv"/> with: a block per (pixel tile, output-channel tile).</summary>
    public static long Int8ConvThreads(long pixels, long outChannels, int tileM, int tileN) =>
        ((pixels + tileM - 1) / tileM) * (outChannels / tileN) * Int8ConvBlock;

    /// <summary>
    /// y = saturate(rint(relu?(sums · scale[k] + offset[k] [clamped, + r · rscale + roffset])) + zero) - shift: a dense 2-d convolution of int8
    /// channels-last x [N, H, W, C] (C a multiple of 64, the stored bytes: a uint8 value less 128) with an int8 KRSC
    /// filter [K, kh, kw, C] (K a multiple of the tile's columns), as an implicit GEMM (M = output pixels, N = output
    /// channels, reduction = taps x channels) on tensor cores: mma.sync m16n8k32 with int32 sums. A block of four warps
    /// computes a <paramref name="tileM"/> x <paramref name="tileN"/> tile, streaming one tap's 64 channels of its input
    /// rows (gathered per tap) and filter rows a step through cp.async stages (one more than the reduction's steps, 2 to
    /// <paramref name="mostStages"/>) into ldmatrix (the same byte layout as the half-precision kernels: two int8 values
    /// where they have one half). Taps outside the image
    /// read <paramref name="inputZero"/> (the input's stored zero point: padding stands for a real 0), so the offsets
    /// are per channel. The sums go through shared memory so that each thread requantizes 4 channels of one pixel and
    /// reads the residual and writes the output 4 bytes a thread, 128 a warp. scale and offset are float tables per output
    /// channel; channels, taps, strides, tile and stages are part of the kernel, sizes are arguments.
    /// </summary>
    public static KernelCode Int8Conv(long channels, long[] kernel, long[] strides, long batch, long outChannels, long[] inSpatial, long[] outSpatial, long[] padsBegin, int tileM, int tileN, int mostStages, int inputZero, Int8ConvEpilogue epilogue)
    {
        if (channels % Int8ConvChunk != 0 || kernel.Length != 2 || !Int8ConvTiles.Contains((tileM, tileN)) || outChannels % tileN != 0 || mostStages < 2 || inputZero is < -128 or > 127)
        {
            throw new ArgumentException("int8 conv: input channels a multiple of 64, output channels of the tile's columns, a 2-d window, a known tile, 2 or more stages, an int8 zero point");
        }

        const int P = Int8ConvPitch, Block = Int8ConvBlock;
        var perTap = channels / Int8ConvChunk;
        var chunks = kernel[0] * kernel[1] * perTap;
        var reduction = kernel[0] * kernel[1] * channels;
        var stages = (int)Math.Clamp(chunks + 1, 2, mostStages);
        var pixels = batch * outSpatial[0] * outSpatial[1];
        var shared = Int8ConvSharedBytes(tileM, tileN, stages);
        var dynamic = shared > StaticSharedBytes;
        var (mi, nj) = (tileM / 32, tileN / 16); // a warp's m16 and n8 tiles
        var (rowsA, rowsB) = (tileM / 32, tileN / 32); // the tile rows each thread copies a step (4 threads a 64-byte row)
        var pitch = tileN + 8; // ints of a row of the epilogue's tile
        var w = new KernelWriter(small: true);
        var m = w.I32("m", checked((int)pixels));
        var k = w.I32("k", checked((int)outChannels));
        var tn = w.I32("tiles_n", checked((int)(outChannels / tileN)));
        var (ih, iw) = (w.I32("ih", checked((int)inSpatial[0])), w.I32("iw", checked((int)inSpatial[1])));
        var (oh, ow) = (w.I32("oh", checked((int)outSpatial[0])), w.I32("ow", checked((int)outSpatial[1])));
        var (ph, pw) = (w.I32("ph", checked((int)padsBegin[0])), w.I32("pw", checked((int)padsBegin[1])));
        var (kw, sh, sw) = (kernel[1], strides[0], strides[1]);
        var folded = w.Float("folded", epilogue.Folded);
        var requantize = Int8Requantize(w, epilogue, "v", "(signed char)(rw >> (8 * e))", "q[e]");

        var fill = unchecked((uint)(byte)(sbyte)inputZero * 0x01010101u);
        var outside = inputZero == 0
            ? "bw_cp_async16(dst, src, in);"
            : $"if (in) bw_cp_async16(dst, src, true); else *(uint4*)dst = make_uint4({fill}u, {fill}u, {fill}u, {fill}u);";

        w.Body.Append(SharedHalves(shared));
        w.Body.Append($$"""
                unsigned short* const as_ = sm_;
                unsigned short* const bs_ = sm_ + {{stages * tileM * P}};
                const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
                // Output-channel tiles fastest: the blocks in flight share their pixel tiles' input rows in L2.
                const int tcol = (int)blockIdx.x % {{tn}}, trow = (int)blockIdx.x / {{tn}};
                const int m0 = trow * {{tileM}}, n0 = tcol * {{tileN}};
                const int wm = (warp >> 1) * {{tileM / 2}}, wn = (warp & 1) * {{tileN / 2}};

                int acc[{{mi}}][{{nj}}][4];
                #pragma unroll
                for (int i = 0; i < {{mi}}; i++) {
                    #pragma unroll
                    for (int n = 0; n < {{nj}}; n++) { acc[i][n][0] = 0; acc[i][n][1] = 0; acc[i][n][2] = 0; acc[i][n][3] = 0; }
                }
                {
                    // This thread's copies: 16-byte segment tid & 3 of tile rows tid >> 2, + 32, ... for the input (an
                    // output pixel's window corner, checked per tap) and the filter (an output channel's row).
                    const int seg = tid & 3, lr = tid >> 2;
                    const signed char* const xb = (const signed char*)x;
                    const signed char* const wb = (const signed char*)wt;
                    i64 xbase[{{rowsA}}]; int iy0[{{rowsA}}], ix0[{{rowsA}}]; bool pv[{{rowsA}}];
                    #pragma unroll
                    for (int j = 0; j < {{rowsA}}; j++) {
                        const int p = m0 + lr + 32 * j;
                        pv[j] = p < {{m}};
                        const int pp = pv[j] ? p : 0, ohw = {{oh}} * {{ow}};
                        const int img = pp / ohw, rem = pp - img * ohw, oy = rem / {{ow}}, ox = rem - oy * {{ow}};
                        xbase[j] = (i64)img * {{ih}} * {{iw}} * {{channels}} + seg * 16;
                        iy0[j] = oy * {{sh}} - {{ph}};
                        ix0[j] = ox * {{sw}} - {{pw}};
                    }
                    auto load = [&](int kc, int stage) {
                        const int tap = kc / {{perTap}}, cc = (kc - tap * {{perTap}}) * {{Int8ConvChunk}};
                        const int ki = tap / {{kw}}, kj = tap - ki * {{kw}};
                        #pragma unroll
                        for (int j = 0; j < {{rowsA}}; j++) {
                            const int iy = iy0[j] + ki, ix = ix0[j] + kj;
                            const bool in = pv[j] && iy >= 0 && iy < {{ih}} && ix >= 0 && ix < {{iw}};
                            unsigned short* const dst = as_ + (stage * {{tileM}} + lr + 32 * j) * {{P}} + seg * 8;
                            const unsigned short* const src = (const unsigned short*)(in ? xb + xbase[j] + ((i64)iy * {{iw}} + ix) * {{channels}} + cc : xb);
                            {{outside}}
                        }
                        #pragma unroll
                        for (int j = 0; j < {{rowsB}}; j++) {
                            bw_cp_async16(bs_ + (stage * {{tileN}} + lr + 32 * j) * {{P}} + seg * 8,
                                (const unsigned short*)(wb + (i64)(n0 + lr + 32 * j) * {{reduction}} + (i64)kc * {{Int8ConvChunk}} + seg * 16), true);
                        }
                    };
                    #pragma unroll
                    for (int s = 0; s < {{stages - 1}}; s++) {
                        if (s < {{chunks}}) load(s, s);
                        bw_cp_async_commit();
                    }

                    // Warp tile: rows wm.., columns wn... A: row lane & 15, 16-byte half lane >> 4; B (filter rows are
                    // columns of the product): output channel lane & 7 (+ 8 for lanes 16-31), 16-byte half (lane >> 3) & 1.
                    const int aoff = (wm + (lane & 15)) * {{P}} + (lane >> 4) * 8;
                    const int boff = (wn + (lane >> 4) * 8 + (lane & 7)) * {{P}} + ((lane >> 3) & 1) * 8;
                    for (int i = 0; i < {{chunks}}; i++) {
                        bw_cp_async_wait<{{stages - 2}}>();
                        __syncthreads();
                        const int next = i + {{stages - 1}};
                        if (next < {{chunks}}) load(next, next % {{stages}});
                        bw_cp_async_commit();
                        const unsigned short* const at = as_ + (i % {{stages}}) * {{tileM * P}};
                        const unsigned short* const bt = bs_ + (i % {{stages}}) * {{tileN * P}};
                        #pragma unroll
                        for (int ks = 0; ks < 2; ks++) {
                            unsigned af[{{mi}}][4];
                            #pragma unroll
                            for (int u = 0; u < {{mi}}; u++) bw_ldsm_x4(af[u], at + aoff + u * 16 * {{P}} + ks * 16);
                            #pragma unroll
                            for (int np = 0; np < {{nj / 2}}; np++) {
                                unsigned f[4];
                                bw_ldsm_x4(f, bt + boff + np * 16 * {{P}} + ks * 16);
                                #pragma unroll
                                for (int u = 0; u < {{mi}}; u++) { bw_mma_16832_s8(acc[u][2 * np], af[u], f[0], f[1]); bw_mma_16832_s8(acc[u][2 * np + 1], af[u], f[2], f[3]); }
                            }
                        }
                    }
                    bw_cp_async_wait<0>();
                }
                __syncthreads();

                // The sums through shared memory, half the tile's rows at a time (the warps of that half write, every
                // thread requantizes): an int32 tile [{{tileM / 2}}][{{pitch}}] over the stages' memory. Accumulator e of n-tile
                // nb holds row g (+ 8 for e >= 2) of the m16 tile, columns 2t and 2t + 1 (a half-warp's 8-byte writes
                // fall in distinct banks: rows {{pitch}} ints apart). Then 4 channels of one pixel a thread, a warp's 32
                // threads along a row: the residual read and the output written 4 bytes a thread, 128 a warp.
                int* const part = (int*)sm_;
                #pragma unroll
                for (int half = 0; half < 2; half++) {
                    if ((warp >> 1) == half) {
                        #pragma unroll
                        for (int u = 0; u < {{mi}}; u++) {
                            #pragma unroll
                            for (int nb = 0; nb < {{nj}}; nb++) {
                                const int row = u * 16 + g, c = wn + nb * 8 + 2 * t;
                                *(int2*)(part + row * {{pitch}} + c) = make_int2(acc[u][nb][0], acc[u][nb][1]);
                                *(int2*)(part + (row + 8) * {{pitch}} + c) = make_int2(acc[u][nb][2], acc[u][nb][3]);
                            }
                        }
                    }
                    __syncthreads();
                    for (int i = tid; i < {{tileM / 2 * (tileN / 4)}}; i += {{Block}}) {
                        const int row = i / {{tileN / 4}}, c4 = (i - row * {{tileN / 4}}) * 4;
                        const int p = m0 + half * {{tileM / 2}} + row;
                        if (p >= {{m}}) continue;
                        const int n = n0 + c4;
                        const i64 o = (i64)p * {{k}} + n;
                        {{(epilogue.Residual is null ? string.Empty : "const unsigned rw = *(const unsigned*)((const signed char*)r + o);")}}
                        const int4 s4 = *(const int4*)(part + row * {{pitch}} + c4);
                        const float4 sc = *(const float4*)(scale + n);
                        const float4 of = *(const float4*)(offset + n);
                        const int sv[4] = {s4.x, s4.y, s4.z, s4.w};
                        const float scv[4] = {sc.x, sc.y, sc.z, sc.w}, ofv[4] = {of.x, of.y, of.z, of.w};
                        unsigned q[4];
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            float v = (float)sv[e] * scv[e] + (ofv[e] + {{folded}});
                            {{requantize}}
                        }
                        *(unsigned*)((signed char*)y + o) = {{PackedBytes("q", 0)}};
                    }
                    __syncthreads();
                }

            """);
        var code = w.Build($"signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ wt, const float* __restrict__ scale, const float* __restrict__ offset, const signed char* __restrict__ r, {KernelWriter.ArgsParameter}");
        return code with { Source = AttentionHelpers + Int8MmaHelper + code.Source, SharedBytes = dynamic ? shared : 0 };
    }

    /// <summary>
    /// Statements turning <paramref name="v"/> (a float: the sum times its channel's scale plus its offset plus
    /// <see cref="Int8ConvEpilogue.Folded"/>) into <paramref name="q"/> (an unsigned whose low byte is the stored int8):
    /// the convolution's clamp and the residual (<paramref name="residualByte"/>, a signed char expression), the ReLU as
    /// the lower bound of the saturation, and the rounding to even by adding 1.5 * 2^23 (the sum's low byte is the
    /// rounded value's). Nine float instructions a value with a residual, five without: the requantization is most of
    /// a 1x1 block end's instructions (session 27), where rintf, a separate zero point and shift and compare-selects took
    /// about twice as many. The same values as rounding each step as ONNX writes it, but where the folded constants
    /// move a tie (a step at most).
    /// </summary>
    private static string Int8Requantize(KernelWriter w, Int8ConvEpilogue epilogue, string v, string residualByte, string q, string prefix = "")
    {
        if (epilogue.OutType is not (ElementType.UInt8 or ElementType.Int8))
        {
            throw new ArgumentException($"int8 requantization: the output is {epilogue.OutType.ShortName()}, not uint8 or int8 (the stored byte's range is [-128, 127] after the shift)");
        }

        var text = new System.Text.StringBuilder();
        if (epilogue.Clamp is { } cl)
        {
            if (!double.IsInfinity(cl.Low))
            {
                text.Append($"{v} = fmaxf({v}, {w.Float(prefix + "clamp_low", cl.Low + epilogue.Folded)}); ");
            }

            if (!double.IsInfinity(cl.High))
            {
                text.Append($"{v} = fminf({v}, {w.Float(prefix + "clamp_high", cl.High + epilogue.Folded)}); ");
            }
        }

        if (epilogue.Residual is { } rs)
        {
            var (lo, hi, rscale) = (w.Float(prefix + "conv_low", rs.Low + epilogue.Folded), w.Float(prefix + "conv_high", rs.High + epilogue.Folded), w.Float(prefix + "rscale", rs.Scale));
            text.Append($"{v} = fminf(fmaxf({v}, {lo}), {hi}); {v} = fmaf((float)({residualByte}), {rscale}, {v}); ");
        }

        var zero = epilogue.OutZero - epilogue.Shift;
        var low = epilogue.Relu ? Math.Max(zero, -128) : -128;
        if (epilogue.Silu is { } f)
        {
            // The convolution's own QuantizeLinear (rounded and saturated), its DequantizeLinear, the sigmoid [and its
            // QuantizeLinear and DequantizeLinear], the Mul, then the SiLU's QuantizeLinear below.
            text.Append($"{v} = rintf(fminf(fmaxf({v}, -128.f), 127.f)); {{ const float real_ = ({v} - {w.Float(prefix + "silu_in_zero", zero)}) * {w.Float(prefix + "silu_in_scale", f.YScale)}; float gate_ = bw_sigmoid(real_); ");
            if (f.Sigmoid is { } g)
            {
                var (quantized, gScale, gZero) = QuantizedField(w, "gate_", "gate", g.Scale, g.Zero, g.Type);
                text.Append($"gate_ = ({quantized} - {gZero}) * {gScale}; ");
            }

            text.Append($"{v} = real_ * gate_ * {w.Float(prefix + "silu_out_multiplier", 1 / f.OutScale)} + {w.Float(prefix + "silu_out_zero", f.OutZero - f.Shift)}; }} ");
            low = -128;
        }

        text.Append($"{v} = fminf(fmaxf({v}, {w.Float(prefix + "out_low", low)}), 127.f); {q} = {RoundedBits(v)};");
        return text.ToString();
    }

    /// <summary>
    /// The bits of float expression <paramref name="v"/> (within [-128, 127]) plus 1.5 * 2^23, an unsigned whose low byte
    /// is v rounded half to even, as a stored int8: the float add rounds to units, with no rintf or conversion.
    /// </summary>
    private static string RoundedBits(string v) => $"__float_as_uint(({v}) + 12582912.f)";

    /// <summary>
    /// The low bytes of <paramref name="q"/>[<paramref name="first"/>] to [first + 3] (unsigneds from
    /// <see cref="Int8Requantize"/>) packed into one 32-bit word, the first in the lowest byte.
    /// </summary>
    private static string PackedBytes(string q, int first) =>
        $"__byte_perm(__byte_perm({q}[{first}], {q}[{first + 1}], 0x0040), __byte_perm({q}[{first + 2}], {q}[{first + 3}], 0x0040), 0x5410)";

    /// <summary>The int8 tensor-core product (m16n8k32, int32 sums); the CPU test runner defines its own.</summary>
    private const string Int8MmaHelper = """
        #ifndef BW_INT8_MMA_HELPERS
        #define BW_INT8_MMA_HELPERS
        __device__ __forceinline__ void bw_mma_16832_s8(int* c, const unsigned* a, unsigned b0, unsigned b1)
        {
            asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
        #endif

        """;
}
