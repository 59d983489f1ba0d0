using System.Globalization;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// An int8 depthwise convolution (groups == channels, one filter each) in the integer domain: MobileNetV2's depthwise
/// layers ran 1.3-2.2x slower in int8 than in fp16 on an H200 (session 31: 0.505 ms against 0.231 for the 32-channel
/// 3x3 at 112x112, b=256) through the float kernel with a table per loaded byte, and a pass after each made its uint8
/// output int8 again for the next layer.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="Int8Depthwise"/>.</summary>
    public const int Int8DepthwiseBlock = 256;

    /// <summary>Output columns a thread of <see cref="Int8Depthwise"/> computes (their input windows overlap).</summary>
    public const int Int8DepthwiseOutputs = 4;

    /// <summary>Largest filter window <see cref="Int8Depthwise"/> unrolls: 7 rows, 8 columns (two dp4a chunks a row).</summary>
    public const int Int8DepthwiseMaxRows = 7;

    /// <summary>See <see cref="Int8DepthwiseMaxRows"/>.</summary>
    public const int Int8DepthwiseMaxColumns = 8;

    /// <summary>Whether <see cref="Int8Depthwise"/> takes the layer: channels in fours, a window up to 7 x 8, strides 1 or 2.</summary>
    public static bool Int8DepthwiseTakes(long channels, long[] kernel, long[] strides) =>
        channels % 4 == 0 && channels is > 0 and <= 1 << 16 && kernel.Length == 2 && strides.Length == 2
        && kernel[0] is >= 1 and <= Int8DepthwiseMaxRows && kernel[1] is >= 1 and <= Int8DepthwiseMaxColumns && strides.All(s => s is 1 or 2);

    /// <summary>Threads <see cref="Int8Depthwise"/> runs: one for each group of four channels, <paramref name="rows"/> output rows and <see cref="Int8DepthwiseOutputs"/> output columns.</summary>
    public static long Int8DepthwiseThreads(long batch, long channels, long[] outSpatial, int rows) =>
        batch * ((outSpatial[0] + rows - 1) / rows) * ((outSpatial[1] + Int8DepthwiseOutputs - 1) / Int8DepthwiseOutputs) * (channels / 4);

    /// <summary>32-bit words of a row of the filter (a dp4a chunk of four columns each).</summary>
    private static int Int8DepthwiseChunks(long kernelWidth) => (int)((kernelWidth + 3) / 4);

    /// <summary>
    /// The filter as <see cref="Int8Depthwise"/> reads it, from <paramref name="weight"/>(channel, row, column) of a
    /// [C, 1, kh, kw] int8 filter: for each group of four channels, each row and each chunk of four columns, four words
    /// (one a channel, its four columns' bytes, zero past the window), so a thread loads its channels' row chunk as 16 bytes.
    /// </summary>
    public static sbyte[] Int8DepthwiseFilter(Func<long, long, long, sbyte> weight, long channels, long kernelHeight, long kernelWidth)
    {
        var chunks = Int8DepthwiseChunks(kernelWidth);
        var result = new sbyte[channels * kernelHeight * chunks * 4];
        var i = 0;
        for (long g = 0; g < channels / 4; g++)
        {
            for (long r = 0; r < kernelHeight; r++)
            {
                for (var k = 0; k < chunks; k++)
                {
                    for (var j = 0; j < 4; j++)
                    {
                        for (var b = 0; b < 4; b++)
                        {
                            var s = (4 * k) + b;
                            result[i++] = s < kernelWidth ? weight((4 * g) + j, r, s) : (sbyte)0;
                        }
                    }
                }
            }
        }

        return result;
    }

    /// <summary>
    /// y[n, oy, ox, c] = requantize(Σ over the window (x[n, oy·sh - ph + r, ox·sw - pw + s, c] - zero) · w[c, r, s]) for
    /// int8 channels-last x and y (stored bytes, as every int8 activation of the engine), the epilogue of the other own
    /// int8 kernels (<see cref="Int8ConvEpilogue"/>: scale and offset per channel, a ReLU or a SiLU, the output's zero
    /// point and shift; no residual). A thread takes four channels (one 32-bit word a pixel), <paramref name="rows"/>
    /// output rows and <see cref="Int8DepthwiseOutputs"/> output columns. Each input row it needs is loaded once as words
    /// (a pixel outside the image reads the input's zero point, which the offset's share cancels), four neighbouring
    /// columns are transposed into one word a channel (eight byte permutes) and dp4a multiplies that word by the
    /// channel's four filter taps of the row, shifted a byte where the next output column's window starts one column
    /// later: a 3x3 row of four outputs is two transposes and sixteen dp4a for sixteen products of four. Sums are int32;
    /// the window, strides and channel count are the kernel's, the batch and image sizes arguments.
    /// </summary>
    public static KernelCode Int8Depthwise(long channels, long[] kernel, long[] strides, long batch, long[] inSpatial, long[] outSpatial, long[] padsBegin, int zero, Int8ConvEpilogue epilogue, int rows = 2)
    {
        if (!Int8DepthwiseTakes(channels, kernel, strides) || rows is < 1 or > 4 || epilogue.Residual is not null || zero is < -128 or > 127)
        {
            throw new ArgumentException("int8 depthwise: channels in fours, a window up to 7 x 8, strides 1 or 2, 1-4 rows a thread, a stored zero point in [-128, 127], no residual");
        }

        var threads = Int8DepthwiseThreads(batch, channels, outSpatial, rows);
        if (threads > int.MaxValue)
        {
            throw new ArgumentException("int8 depthwise: more than 2^31 threads");
        }

        const int P = Int8DepthwiseOutputs;
        var (kh, kw, sh, sw) = ((int)kernel[0], (int)kernel[1], (int)strides[0], (int)strides[1]);
        var chunks = Int8DepthwiseChunks(kw);
        var groups = channels / 4;

        // The windows of four input columns each output column's chunks read: a window serves a chunk of len taps that
        // starts d columns into it where d <= 4 - len (the weights shifted d bytes); otherwise a new window starts there.
        var bases = new List<int>();
        var uses = new (int Window, int Shift)[P, chunks];
        for (var o = 0; o < P; o++)
        {
            for (var k = 0; k < chunks; k++)
            {
                var (target, len) = ((o * sw) + (4 * k), Math.Min(4, kw - (4 * k)));
                var found = bases.FindIndex(b => b <= target && target - b <= 4 - len);
                if (found < 0)
                {
                    bases.Add(target);
                    found = bases.Count - 1;
                }

                uses[o, k] = (found, target - bases[found]);
            }
        }

        var columns = bases.Max() + 4;
        var inputRows = ((rows - 1) * sh) + kh;
        var w = new KernelWriter(small: true);
        var n = w.I32("n", (int)threads);
        var wblocks = w.Div("wblocks", (outSpatial[1] + P - 1) / P);
        var hblocks = w.Div("hblocks", (outSpatial[0] + rows - 1) / rows);
        var (ih, iw) = (w.I32("ih", checked((int)inSpatial[0])), w.I32("iw", checked((int)inSpatial[1])));
        var (oh, ow) = (w.I32("oh", checked((int)outSpatial[0])), w.I32("ow", checked((int)outSpatial[1])));
        var (ph, pw) = (w.I32("ph", checked((int)padsBegin[0])), w.I32("pw", checked((int)padsBegin[1])));
        var zeroWord = w.I32("zero_word", (zero & 0xFF) * 0x01010101);
        var folded = w.Float("folded", epilogue.Folded);
        var requantize = Int8Requantize(w, epilogue, "v", "0", "q[e]");
        string L(long v) => v.ToString(CultureInfo.InvariantCulture);
        var c = L(channels);
        var b = w.Body;
        b.Append(CultureInfo.InvariantCulture, $$"""
                const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
                if (i >= {{n}}) return;
                unsigned r_ = (unsigned)i;
                const unsigned g = r_ % {{L(groups)}}u; r_ /= {{L(groups)}}u;
                {{w.Peel(wblocks, "r_", "wb")}}
                {{w.Peel(hblocks, "r_", "hb")}}
                const unsigned img = r_;
                const int ox0 = (int)wb * {{P}}, oy0 = (int)hb * {{rows}};
                const int x0 = ox0 * {{sw}} - {{pw}}, y0 = oy0 * {{sh}} - {{ph}};
                const signed char* const xb = (const signed char*)x + (i64)img * {{ih}} * {{iw}} * {{c}} + g * 4;
                const int4* const wg = (const int4*)wt + (i64)g * {{kh * chunks}};
                float sc[4], of[4];
                #pragma unroll
                for (int j = 0; j < 4; j++) { sc[j] = scale[g * 4 + j]; of[j] = offset[g * 4 + j] + {{folded}}; }
                int acc[{{rows}}][{{P}}][4];
                #pragma unroll
                for (int u = 0; u < {{rows * P * 4}}; u++) acc[u / {{P * 4}}][(u / 4) % {{P}}][u % 4] = 0;

            """);
        for (var t = 0; t < inputRows; t++)
        {
            // The output rows whose window holds input row t, and the filter row each reads it with.
            var readers = Enumerable.Range(0, rows).Select(rr => (Row: rr, Tap: t - (rr * sh))).Where(p => p.Tap >= 0 && p.Tap < kh).ToList();
            if (readers.Count == 0)
            {
                continue;
            }

            b.Append(CultureInfo.InvariantCulture, $$"""
                    {
                        const int yy = y0 + {{t}};
                        const bool row_in = yy >= 0 && yy < {{ih}};
                        const signed char* const xr = xb + (i64)yy * {{iw}} * {{c}};
                        int v[{{columns}}];
                        #pragma unroll
                        for (int s = 0; s < {{columns}}; s++) { const int xx = x0 + s; v[s] = row_in && xx >= 0 && xx < {{iw}} ? *(const int*)(xr + (i64)xx * {{c}}) : {{zeroWord}}; }

                """);
            for (var k = 0; k < bases.Count; k++)
            {
                var s0 = bases[k];
                b.Append(CultureInfo.InvariantCulture, $$"""
                            int t{{k}}[4];
                            { const unsigned lo01 = __byte_perm(v[{{s0}}], v[{{s0 + 1}}], 0x5140), lo23 = __byte_perm(v[{{s0 + 2}}], v[{{s0 + 3}}], 0x5140);
                              const unsigned hi01 = __byte_perm(v[{{s0}}], v[{{s0 + 1}}], 0x7362), hi23 = __byte_perm(v[{{s0 + 2}}], v[{{s0 + 3}}], 0x7362);
                              t{{k}}[0] = (int)__byte_perm(lo01, lo23, 0x5410); t{{k}}[1] = (int)__byte_perm(lo01, lo23, 0x7632);
                              t{{k}}[2] = (int)__byte_perm(hi01, hi23, 0x5410); t{{k}}[3] = (int)__byte_perm(hi01, hi23, 0x7632); }

                    """);
            }

            foreach (var (row, tap) in readers)
            {
                for (var k = 0; k < chunks; k++)
                {
                    b.Append(CultureInfo.InvariantCulture, $"        {{ const int4 f = wg[{(tap * chunks) + k}]; const int fw[4] = {{ f.x, f.y, f.z, f.w }};\n");
                    for (var o = 0; o < P; o++)
                    {
                        var (window, shift) = uses[o, k];
                        var weight = shift == 0 ? "fw[j]" : $"(int)((unsigned)fw[j] << {8 * shift})";
                        b.Append(CultureInfo.InvariantCulture, $"          #pragma unroll\n          for (int j = 0; j < 4; j++) acc[{row}][{o}][j] = __dp4a(t{window}[j], {weight}, acc[{row}][{o}][j]);\n");
                    }

                    b.Append("        }\n");
                }
            }

            b.Append("    }\n");
        }

        b.Append(CultureInfo.InvariantCulture, $$"""
                signed char* const yb = (signed char*)y;
                #pragma unroll
                for (int rr = 0; rr < {{rows}}; rr++) {
                    const int oy = oy0 + rr;
                    #pragma unroll
                    for (int o = 0; o < {{P}}; o++) {
                        const int ox = ox0 + o;
                        if (oy >= {{oh}} || ox >= {{ow}}) continue;
                        unsigned q[4];
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            float v = (float)acc[rr][o][e] * sc[e] + of[e];
                            {{requantize}}
                        }
                        *(unsigned*)(yb + (((i64)img * {{oh}} + oy) * {{ow}} + ox) * {{c}} + g * 4) = {{PackedBytes("q", 0)}};
                    }
                }

            """);
        var code = w.Build($"signed char* __restrict__ y, const signed char* __restrict__ x, const signed char* __restrict__ wt, const float* __restrict__ scale, const float* __restrict__ offset, const signed char* __restrict__ r, {KernelWriter.ArgsParameter}");
        return code with { Source = code.Source.Replace("extern \"C\" __global__ void ", $"extern \"C\" __global__ void __launch_bounds__({Int8DepthwiseBlock}) ", StringComparison.Ordinal) };
    }
}
