using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Generators for the quantized operators: linear (de)quantization per tensor or per axis, the dynamic quantization's
/// range, and integer convolutions and matrix products accumulated exactly in int32 (one thread per output; the tensor
/// core int8 path is another issue). Requantization rounds half to even (rintf) and saturates to the output type.
/// Scales are read in their storage type (double for constants, so an fp16 plan keeps them exact).
/// </summary>
internal static partial class KernelSource
{
    /// <summary>What is subtracted from a quantized value of <paramref name="type"/> to store it as int8: a uint8 v is kept as the byte v - 128.</summary>
    public static int StoredShift(ElementType type) => type == ElementType.UInt8 ? 128 : 0;

    /// <summary>
    /// The float expression <paramref name="v"/> quantized to <paramref name="type"/> as ONNX's QuantizeLinear does,
    /// rint(v / scale) + zero saturated to the type's range (<see cref="Saturation"/>), as a float; the scale and zero
    /// point are fields of the kernel's arguments named after <paramref name="prefix"/> (one kernel for every layer).
    /// Returns the expression and the scale's and zero point's fields.
    /// </summary>
    private static (string Value, string Scale, string Zero) QuantizedField(KernelWriter w, string v, string prefix, double scale, double zero, ElementType type)
    {
        var (low, high) = Saturation(type);
        var (s, z) = (w.Float(prefix + "_scale", scale), w.Float(prefix + "_zero", zero));
        return ($"fminf(fmaxf(rintf(({v}) / {s}) + {z}, {low}), {high})", s, z);
    }

    /// <summary>
    /// <see cref="QuantizedField"/> (fields "q_*") stored as the int8 byte of the quantized value less the shift its
    /// type is stored with (128 for uint8, <see cref="StoredShift"/>).
    /// </summary>
    private static string StoredQuantized(KernelWriter w, string v, (double Scale, double Zero, ElementType Type) q) =>
        $"(signed char)({QuantizedField(w, v, "q", q.Scale, q.Zero, q.Type).Value} - {F(StoredShift(q.Type))})";

    /// <summary>The saturating range of an 8-bit (or 16-bit) quantized type.</summary>
    private static (string Low, string High) Saturation(ElementType t) => t switch
    {
        ElementType.UInt8 => ("0.f", "255.f"),
        ElementType.Int8 => ("-128.f", "127.f"),
        ElementType.UInt16 => ("0.f", "65535.f"),
        ElementType.Int16 => ("-32768.f", "32767.f"),
        _ => throw new ArgumentOutOfRangeException(nameof(t), $"{t.ShortName()} is not a quantized type"),
    };

    /// <summary>
    /// DequantizeLinear: y = (x - zero_point[c]) * scale[c], c = (i / inner) % axis_size (per axis) or 0 (per tensor);
    /// a null zero point reads as 0.
    /// </summary>
    public static KernelCode Dequantize(ElementType xType, ElementType yType, ElementType scaleType, ElementType zeroPointType, long count, long axisSize, long inner, bool perAxis)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var channel = perAxis ? $"(i / {w.I64("inner", inner)}) % {w.I64("axis_size", axisSize)}" : "0";
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 c = {{channel}};
                const float zp = zero_point ? (float)zero_point[c] : 0.f;
                y[i] = ({{CType(yType)}})(((float)x[i] - zp) * (float)scale[c]);

            """);
        return w.Build($"{CType(yType)}* __restrict__ y, const {CType(xType)}* __restrict__ x, const {CType(scaleType)}* __restrict__ scale, const {CType(zeroPointType)}* __restrict__ zero_point, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// QuantizeLinear: y = saturate(round_half_even(x / scale[c]) + zero_point[c]), channels as in <see cref="Dequantize"/>.
    /// </summary>
    public static KernelCode Quantize(ElementType xType, ElementType yType, ElementType scaleType, long count, long axisSize, long inner, bool perAxis)
    {
        var (low, high) = Saturation(yType);
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var channel = perAxis ? $"(i / {w.I64("inner", inner)}) % {w.I64("axis_size", axisSize)}" : "0";
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 c = {{channel}};
                const float zp = zero_point ? (float)zero_point[c] : 0.f;
                const float v = rintf((float)x[i] / (float)scale[c]) + zp;
                y[i] = ({{CType(yType)}})(v < {{low}} ? {{low}} : v > {{high}} ? {{high}} : v);

            """);
        return w.Build($"{CType(yType)}* __restrict__ y, const {CType(xType)}* __restrict__ x, const {CType(scaleType)}* __restrict__ scale, const {CType(yType)}* __restrict__ zero_point, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// The requantization after an int8 convolution (int32 sums as exact floats, channels-last [pixels, channels]):
    /// v = acc * scale[k] + offset[k] (offset[(p % plane) * channels + k] with a per-pixel table, which carries the input
    /// zero point's share at the padded border), an optional ReLU, then y = saturate(round_half_even(v) + zero_point)
    /// written less <paramref name="shift"/> as int8 (128 for a uint8 activation, kept as int8 for the next convolution).
    /// </summary>
    public static KernelCode Requantize(ElementType outType, long count, long channels, long plane, double zeroPoint, int shift, bool relu, bool perPixel)
    {
        var (low, high) = Saturation(outType);
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var k = w.I64("channels", channels);
        var offset = perPixel ? $"offset[((i / {k}) % {w.I64("plane", plane)}) * {k} + c]" : "offset[c]";
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 c = i % {{k}};
                float v = acc[i] * (float)scale[c] + (float){{offset}};
                {{(relu ? "v = v > 0.f ? v : 0.f;" : "")}}
                v = rintf(v) + {{w.Float("zero_point", zeroPoint)}};
                v = v < {{low}} ? {{low}} : v > {{high}} ? {{high}} : v;
                y[i] = (signed char)((int)v - {{w.I32("shift", shift)}});

            """);
        return w.Build($"signed char* __restrict__ y, const float* __restrict__ acc, const double* __restrict__ scale, const double* __restrict__ offset, {KernelWriter.ArgsParameter}");
    }

    /// <summary>A block's threads' minima mn and maxima mx into lo[0] and hi[0] (shared arrays of a value a thread), by halves.</summary>
    private const string BlockMinMax = """
            lo[threadIdx.x] = mn; hi[threadIdx.x] = mx;
            __syncthreads();
            for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
                if (threadIdx.x < s) {
                    lo[threadIdx.x] = lo[threadIdx.x + s] < lo[threadIdx.x] ? lo[threadIdx.x + s] : lo[threadIdx.x];
                    hi[threadIdx.x] = hi[threadIdx.x + s] > hi[threadIdx.x] ? hi[threadIdx.x + s] : hi[threadIdx.x];
                }
                __syncthreads();
            }
        """;

    /// <summary>
    /// DynamicQuantizeLinear's range, in one block: min and max of x with 0 included, scale = (max - min) / 255 (1 when
    /// the range is empty), zero point = round_half_even(clamp(-min / scale, 0, 255)); the scale is written as float32
    /// (for the quantization that follows) and in the output's storage type.
    /// </summary>
    public static KernelCode DynamicQuantizeRange(ElementType xType, ElementType scaleType, long count)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        w.Body.Append($$"""
                __shared__ float lo[{{BlockSize}}], hi[{{BlockSize}}];
                float mn = 0.f, mx = 0.f;
                for (i64 j = threadIdx.x; j < {{n}}; j += blockDim.x) { const float v = (float)x[j]; mn = v < mn ? v : mn; mx = v > mx ? v : mx; }
            {{BlockMinMax}}
                if (threadIdx.x == 0) {
                    const float scale = hi[0] == lo[0] ? 1.f : (hi[0] - lo[0]) / 255.f;
                    float zp = 0.f - lo[0] / scale;
                    zp = rintf(zp < 0.f ? 0.f : zp > 255.f ? 255.f : zp);
                    scale_f32[0] = scale;
                    y_scale[0] = ({{CType(scaleType)}})scale;
                    y_zero_point[0] = (unsigned char)zp;
                }

            """);
        return w.Build($"float* __restrict__ scale_f32, {CType(scaleType)}* __restrict__ y_scale, unsigned char* __restrict__ y_zero_point, const {CType(xType)}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// The first pass of a large DynamicQuantizeLinear's range: each of the <paramref name="blocks"/> blocks takes the
    /// minimum and maximum (0 included) of its grid-stride share of x into partials [lo of every block, then hi of every
    /// block], which <see cref="DynamicQuantizeRange"/> then reduces as its input (the minimum of all the lows and highs
    /// is the lowest low, the maximum the highest high). One block over a transformer's activation (BERT's 4096 x 768 at
    /// b=32) read at one multiprocessor's bandwidth.
    /// </summary>
    public static KernelCode DynamicQuantizePartials(ElementType xType, long count, long blocks)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var b = w.I64("blocks", blocks);
        w.Body.Append($$"""
                __shared__ float lo[{{BlockSize}}], hi[{{BlockSize}}];
                float mn = 0.f, mx = 0.f;
                for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < {{n}}; j += (i64){{b}} * blockDim.x) { const float v = (float)x[j]; mn = v < mn ? v : mn; mx = v > mx ? v : mx; }
            {{BlockMinMax}}
                if (threadIdx.x == 0) { partials[blockIdx.x] = lo[0]; partials[{{b}} + blockIdx.x] = hi[0]; }

            """);
        return w.Build($"float* __restrict__ partials, const {CType(xType)}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Blocks of <see cref="DynamicQuantizePartials"/> for <paramref name="count"/> values: one per 16 values a thread, at most 1,024; 1 (one pass, no partials) for up to 64 K values.</summary>
    public static long DynamicQuantizeBlocks(long count) => count <= 65536 ? 1 : Math.Min(1024, (count + (16 * BlockSize) - 1) / (16 * BlockSize));

    /// <summary>
    /// An integer convolution over NCHW (any spatial rank): acc = sum over the group's window of (x - x_zero_point) *
    /// (w - w_zero_point[m]) in int32. With <paramref name="requantize"/> (QLinearConv) the output is
    /// saturate(round_half_even((acc + bias[m]) * x_scale * w_scale[m] / y_scale) + y_zero_point), else acc (ConvInteger).
    /// Per-channel parameters step by their stride argument (0 for one value).
    /// </summary>
    public static KernelCode IntegerConv(ElementType xType, ElementType wType, ElementType yType, (ElementType X, ElementType W, ElementType Y) scaleTypes, int rank, long count, long outChannels, long inChannelsPerGroup, long outChannelsPerGroup, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] padsBegin, long[] dilations, long wZeroPointStride, long wScaleStride, bool requantize)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var m = w.I64("m", outChannels);
        var cg = w.I64("cin_per_group", inChannelsPerGroup);
        var mg = w.I64("cout_per_group", outChannelsPerGroup);
        var cin = w.I64("cin", inChannelsPerGroup * (outChannels / Math.Max(1, outChannelsPerGroup)));
        var wzs = w.I64("w_zp_stride", wZeroPointStride);
        var wss = requantize ? w.I64("w_scale_stride", wScaleStride) : "0";
        var inS = new string[rank];
        var outS = new string[rank];
        var k = new string[rank];
        var st = new string[rank];
        var pb = new string[rank];
        var dl = new string[rank];
        for (var d = 0; d < rank; d++)
        {
            inS[d] = w.I64($"in{d}", inSpatial[d]);
            outS[d] = w.I64($"out{d}", outSpatial[d]);
            k[d] = w.I64($"k{d}", kernel[d]);
            st[d] = w.I64($"stride{d}", strides[d]);
            pb[d] = w.I64($"pad{d}", padsBegin[d]);
            dl[d] = w.I64($"dilation{d}", dilations[d]);
        }

        ThreadIndex(w, n);
        var b = w.Body;
        b.Append("    i64 r_ = i;\n");
        for (var d = rank - 1; d >= 0; d--)
        {
            b.Append($"    const i64 o{d} = r_ % {outS[d]}; r_ /= {outS[d]};\n");
        }

        b.Append($"    const i64 oc = r_ % {m}; const i64 batch = r_ / {m};\n");
        b.Append($"    const i64 g = oc / {mg};\n");
        b.Append("    const int xz = x_zero_point ? (int)x_zero_point[0] : 0;\n");
        b.Append($"    const int wz = w_zero_point ? (int)w_zero_point[oc * {wzs}] : 0;\n");
        var inPlane = string.Join(" * ", inS);
        var kPlane = string.Join(" * ", k);
        b.Append("    int acc = 0;\n");
        b.Append($"    for (i64 ci = 0; ci < {cg}; ci++) {{\n");
        b.Append($"        const {CType(xType)}* xc = x + (batch * {cin} + g * {cg} + ci) * ({inPlane});\n");
        b.Append($"        const {CType(wType)}* wc = w + (oc * {cg} + ci) * ({kPlane});\n");
        var indent = "        ";
        for (var d = 0; d < rank; d++)
        {
            b.Append($"{indent}for (i64 k{d} = 0; k{d} < {k[d]}; k{d}++) {{\n");
            indent += "    ";
            b.Append($"{indent}const i64 p{d} = o{d} * {st[d]} - {pb[d]} + k{d} * {dl[d]};\n");
            b.Append($"{indent}if (p{d} < 0 || p{d} >= {inS[d]}) continue;\n");
        }

        var xOffset = "p0";
        var wOffset = "k0";
        for (var d = 1; d < rank; d++)
        {
            xOffset = $"({xOffset}) * {inS[d]} + p{d}";
            wOffset = $"({wOffset}) * {k[d]} + k{d}";
        }

        b.Append($"{indent}acc += ((int)xc[{xOffset}] - xz) * ((int)wc[{wOffset}] - wz);\n");
        for (var d = rank - 1; d >= 0; d--)
        {
            indent = indent[..^4];
            b.Append($"{indent}}}\n");
        }

        b.Append("    }\n");
        AppendIntegerOutput(b, yType, requantize, "oc", wss);
        return w.Build(IntegerSignature(xType, wType, yType, scaleTypes, "w"));
    }

    /// <summary>
    /// An integer matrix product [batch, M, K] x [batch, K, N] (a batch stride of 0 broadcasts an operand): acc = sum of
    /// (a - a_zero_point[row]) * (b - b_zero_point[col]) in int32; with <paramref name="requantize"/> (QLinearMatMul)
    /// saturate(round_half_even(acc * a_scale * b_scale[col] / y_scale) + y_zero_point), else acc (MatMulInteger).
    /// </summary>
    public static KernelCode IntegerMatMul(ElementType aType, ElementType bType, ElementType yType, (ElementType X, ElementType W, ElementType Y) scaleTypes, long count, long rows, long inner, long cols, long aBatchStride, long bBatchStride, long aZeroPointStride, long bZeroPointStride, long bScaleStride, bool requantize)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var mr = w.I64("rows", rows);
        var kk = w.I64("inner", inner);
        var nc = w.I64("cols", cols);
        var ab = w.I64("a_batch_stride", aBatchStride);
        var bb = w.I64("b_batch_stride", bBatchStride);
        var azs = w.I64("a_zp_stride", aZeroPointStride);
        var bzs = w.I64("b_zp_stride", bZeroPointStride);
        var bss = requantize ? w.I64("b_scale_stride", bScaleStride) : "0";
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 col = i % {{nc}}, row = (i / {{nc}}) % {{mr}}, batch = i / ({{nc}} * {{mr}});
                const int xz = x_zero_point ? (int)x_zero_point[row * {{azs}}] : 0;
                const int wz = w_zero_point ? (int)w_zero_point[col * {{bzs}}] : 0;
                const {{CType(aType)}}* ar = x + batch * {{ab}} + row * {{kk}};
                const {{CType(bType)}}* bc = b + batch * {{bb}} + col;
                int acc = 0;
                for (i64 j = 0; j < {{kk}}; j++) acc += ((int)ar[j] - xz) * ((int)bc[j * {{nc}}] - wz);

            """);
        AppendIntegerOutput(w.Body, yType, requantize, "col", bss);
        return w.Build(IntegerSignature(aType, bType, yType, scaleTypes, "b"));
    }

    private static void AppendIntegerOutput(System.Text.StringBuilder b, ElementType yType, bool requantize, string channel, string scaleStride)
    {
        if (!requantize)
        {
            b.Append("    y[i] = acc;\n");
            return;
        }

        var (low, high) = Saturation(yType);
        b.Append($"    const float v = rintf((float)(acc + (bias ? bias[{channel}] : 0)) * ((float)x_scale[0] * (float)w_scale[{channel} * {scaleStride}] / (float)y_scale[0])) + (y_zero_point ? (float)y_zero_point[0] : 0.f);\n");
        b.Append($"    y[i] = ({CType(yType)})(v < {low} ? {low} : v > {high} ? {high} : v);\n");
    }

    private static string IntegerSignature(ElementType xType, ElementType wType, ElementType yType, (ElementType X, ElementType W, ElementType Y) scaleTypes, string second)
    {
        return $"{CType(yType)}* __restrict__ y, const {CType(xType)}* __restrict__ x, const {CType(wType)}* __restrict__ {second}, const {CType(xType)}* __restrict__ x_zero_point, const {CType(wType)}* __restrict__ w_zero_point, "
            + $"const {CType(scaleTypes.X)}* __restrict__ x_scale, const {CType(scaleTypes.W)}* __restrict__ w_scale, const {CType(scaleTypes.Y)}* __restrict__ y_scale, const {CType(yType)}* __restrict__ y_zero_point, const int* __restrict__ bias, {KernelWriter.ArgsParameter}";
    }
}
