using System.Text;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>Depthwise convolution (one filter per channel, groups == channels), its bias added before the output is stored.</summary>
internal static partial class KernelSource
{
    /// <summary>Outputs along the width one thread computes (their input windows overlap, so a row of input is loaded once for all).</summary>
    public const int DepthwiseOutputsPerThread = 4;

    /// <summary>
    /// A depthwise 2-d convolution y[n, c, oh, ow] = sum over (i, j) of x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] * w[c, i, j]
    /// (zero outside the input). Channels-last (<paramref name="channelsLast"/>: x [N, H, W, C], filter [kh, kw, C],
    /// <paramref name="vector"/> channels per thread read as one 4-byte load, neighbouring threads on neighbouring channels)
    /// or channels-first (x [N, C, H, W], filter [C, kh, kw], neighbouring threads along the width). Each thread computes
    /// <see cref="DepthwiseOutputsPerThread"/> neighbouring outputs along the width in each of <paramref name="rows"/>
    /// neighbouring output rows, loading each input row's span once into registers for every output row whose window
    /// covers it; accumulation is in float. Window, stride, dilation and the channel count are part of the kernel
    /// (unrolled, fixed offsets); the batch, image sizes and pads are arguments.
    /// </summary>
    /// <para>With <paramref name="fusion"/>: the input is read as its own type and each element goes through an
    /// elementwise chain as it is loaded (a DequantizeLinear, a Clip; over an 8-bit input, a 256-entry table in shared
    /// memory that each block fills first, one copy per lane of a warp so that no two lanes' reads meet in one bank);
    /// and/or the sum, plus a per-channel bias, goes through a QuantizeLinear (divided by the reciprocal with one
    /// correction, rounded by adding 1.5 * 2^23) before it is stored as the output's type (where more follows that
    /// QuantizeLinear, the rest through a 256-entry table of its values, one copy per lane likewise). A kernel with a
    /// table (<see cref="DepthwiseFusion.Tables"/>) may run fewer threads than positions: each takes positions a grid
    /// apart, so that a block fills its tables once for many of them.</para>
    public static KernelCode Depthwise(ElementType type, bool channelsLast, int vector, long batch, long channels, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] dilations, long[] padsBegin, DepthwiseFusion? fusion = null, int rows = 1)
    {
        if (inSpatial.Length != 2 || vector is not (1 or 2 or 4) || (vector > 1 && (!channelsLast || channels % vector != 0)) || rows is < 1 or > 8)
        {
            throw new ArgumentException("depthwise: 2-d windows; vectors of 2 or 4 channels only channels-last with channels divisible by them; 1-8 rows a thread");
        }

        var t = CType(type);
        var inType = fusion?.InType ?? type;
        var outType = fusion?.OutType ?? type;
        var (tx, ty) = (CType(inType), CType(outType));
        var p = DepthwiseOutputsPerThread;
        var (kh, kw) = (kernel[0], kernel[1]);
        var (sh, sw) = (strides[0], strides[1]);
        var (dh, dw) = (dilations[0], dilations[1]);
        var span = ((p - 1) * sw) + ((kw - 1) * dw) + 1; // input columns one row of a thread's window touches
        var widthBlocks = (outSpatial[1] + p - 1) / p;
        var rowBlocks = (outSpatial[0] + rows - 1) / rows;
        var threads = DepthwiseThreads(channelsLast, vector, batch, channels, outSpatial, rows);
        var count = batch * channels * Math.Max(inSpatial[0] * inSpatial[1], outSpatial[0] * outSpatial[1]);
        var w = new KernelWriter(KernelWriter.Fits32(count + (span * channels)) && KernelWriter.Fits32(threads));
        var ix = w.Idx;
        var b = w.Body;
        var n = w.Size("n", threads);
        var lanes = w.Div("lanes", channelsLast ? channels / vector : widthBlocks);
        var inner = w.Div("inner", channelsLast ? widthBlocks : rowBlocks);
        var outer = w.Div("outer", channelsLast ? rowBlocks : channels);
        var ih = w.I32("ih", checked((int)inSpatial[0]));
        var iw = w.I32("iw", checked((int)inSpatial[1]));
        var oh = w.I32("oh", checked((int)outSpatial[0]));
        var ow = w.I32("ow", checked((int)outSpatial[1]));
        var ph = w.I32("ph", checked((int)padsBegin[0]));
        var pw = w.I32("pw", checked((int)padsBegin[1]));
        // The channel count is the filter's, fixed for the layer: in the kernel, a channels-last pixel's neighbours and the
        // filter's taps are reads at fixed offsets from one address (no multiply per load); the batch and image sizes stay arguments.
        var c = KernelWriter.Lit(channels);
        var vecType = Name + "_vec";
        var inVecType = inType == type ? vecType : Name + "_xvec";
        var outVecType = outType == type ? vecType : outType == inType ? inVecType : Name + "_yvec";
        var table = fusion?.InputTable == true;
        var outTable = fusion?.OutTable;
        var tables = fusion?.Tables == true;

        // The input chain over one stored element (xe, read from load) into target.
        void InputChain(string indent, string load, string target)
        {
            b.Append(indent).Append("const ").Append(CType(ComputeType(inType))).Append(" xe = ").Append(load).Append(";\n");
            AppendStatements(b, fusion!.InStatements, indent);
            b.Append(indent).Append(target).Append(" = (float)(").Append(fusion.InResult).Append(");\n");
        }

        // A table of 256 values is held once per lane of a warp (a float table's entry j for lane l at j * 32 + l; a byte
        // table's entries 4g..4g+3 for lane l in the word at g * 32 + l), so a warp's 32 reads fall in 32 banks whatever
        // entries they name; filled from a first table of the 256 values.
        if (table)
        {
            // An 8-bit input has 256 values: the chain runs once for each into a table every load then reads (each
            // input element is loaded by several threads and taps, and a QDQ chain divides and rounds).
            b.Append("    __shared__ float lut_once[256];\n    __shared__ float lut[256 * 32];\n");
            b.Append("    for (int j = threadIdx.x; j < 256; j += blockDim.x) {\n");
            InputChain("        ", $"({tx})j", "lut_once[j]");
            b.Append("    }\n");
        }

        if (outTable is not null)
        {
            // The output's chain after its first QuantizeLinear, once for each of that value's 256 integers (a QDQ
            // model's Q -> DQ -> Clip -> Q: a division and a rounding per output otherwise).
            b.Append("    __shared__ ").Append(ty).Append(" lut_out_once[256];\n    __shared__ ").Append(ty).Append(" lut_out[256 * 32];\n");
            b.Append("    for (int j = threadIdx.x; j < 256; j += blockDim.x) {\n");
            b.Append("        const float qv = (float)(j + ").Append(KernelWriter.Lit(outTable.Low)).Append(");\n");
            b.Append("        lut_out_once[j] = (").Append(ty).Append(")(").Append(outTable.Rest).Append(");\n    }\n");
        }

        if (tables)
        {
            b.Append("    __syncthreads();\n");
            b.Append("    for (int j = threadIdx.x; j < 256 * 32; j += blockDim.x) {\n");
            if (table)
            {
                b.Append("        lut[j] = lut_once[j >> 5];\n");
            }

            if (outTable is not null)
            {
                b.Append("        lut_out[j] = lut_out_once[((j >> 7) << 2) | (j & 3)];\n");
            }

            b.Append("    }\n    __syncthreads();\n");
            b.Append("    const unsigned lane_ = threadIdx.x & 31u;\n");
        }

        if (tables)
        {
            b.Append("    for (").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x; i < ").Append(n).Append("; i += (").Append(ix).Append(")gridDim.x * blockDim.x) {\n");
        }
        else
        {
            b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
            b.Append("    if (i >= ").Append(n).Append(") return;\n    {\n");
        }

        b.Append("    ").Append(ix).Append(" r_ = i;\n");
        if (channelsLast)
        {
            // i = ((n * rowBlocks + ob) * widthBlocks + block) * (C / V) + lane
            b.Append("    ").Append(w.Peel(lanes, "r_", "lane")).Append('\n');
            b.Append("    ").Append(w.Peel(inner, "r_", "wb")).Append('\n');
            b.Append("    ").Append(w.Peel(outer, "r_", "ob")).Append('\n');
            b.Append("    const ").Append(ix).Append(" ch = lane * ").Append(KernelWriter.Lit(vector)).Append(";\n");
            b.Append("    const ").Append(ix).Append(" img = r_;\n");
        }
        else
        {
            // i = ((n * C + ch) * rowBlocks + ob) * widthBlocks + block
            b.Append("    ").Append(w.Peel(lanes, "r_", "wb")).Append('\n');
            b.Append("    ").Append(w.Peel(inner, "r_", "ob")).Append('\n');
            b.Append("    ").Append(w.Peel(outer, "r_", "ch")).Append('\n');
            b.Append("    const ").Append(ix).Append(" img = r_;\n");
        }

        b.Append("    const int ox0 = (int)wb * ").Append(KernelWriter.Lit(p)).Append(";\n");
        b.Append("    const int oy0 = (int)ob * ").Append(KernelWriter.Lit(rows)).Append(";\n");
        b.Append("    const int x0 = ox0 * ").Append(KernelWriter.Lit(sw)).Append(" - ").Append(pw).Append(";\n");
        b.Append("    const int y0 = oy0 * ").Append(KernelWriter.Lit(sh)).Append(" - ").Append(ph).Append(";\n");
        b.Append("    float acc[").Append(KernelWriter.Lit(rows)).Append("][").Append(KernelWriter.Lit(p)).Append("][").Append(KernelWriter.Lit(vector)).Append("];\n");
        b.Append("    #pragma unroll\n    for (int q = 0; q < ").Append(KernelWriter.Lit(rows * p * vector)).Append("; q++) acc[q / ").Append(KernelWriter.Lit(p * vector))
            .Append("][(q / ").Append(KernelWriter.Lit(vector)).Append(") % ").Append(KernelWriter.Lit(p)).Append("][q % ").Append(KernelWriter.Lit(vector)).Append("] = 0.f;\n");
        if (channelsLast)
        {
            b.Append("    const ").Append(tx).Append("* xb = x + img * (").Append(ix).Append(")").Append(ih).Append(" * (").Append(ix).Append(")").Append(iw).Append(" * ").Append(c).Append(" + ch;\n");
        }
        else
        {
            b.Append("    const ").Append(tx).Append("* xb = x + (img * ").Append(c).Append(" + ch) * (").Append(ix).Append(")").Append(ih).Append(" * (").Append(ix).Append(")").Append(iw).Append(";\n");
        }

        // The input element stride along the width and between rows (channels-last: a pixel is C elements).
        var colStride = channelsLast ? c : "1";
        b.Append("    const bool inside = x0 >= 0 && x0 + ").Append(KernelWriter.Lit(span)).Append(" <= ").Append(iw).Append(";\n");
        // The thread's filter: its channels' taps at fixed offsets from one address.
        b.Append("    const ").Append(t).Append("* wc = wt + ").Append(channelsLast ? "ch" : $"ch * {KernelWriter.Lit(kh * kw)}").Append(";\n");

        // One element's load from address into v[s], through the input chain or its table where there is one.
        void Load(string indent, string address)
        {
            b.Append(indent).Append("const ").Append(inVecType).Append(" e = *(const ").Append(inVecType).Append("*)(").Append(address).Append(");\n");
            if (table)
            {
                b.Append(indent).Append("#pragma unroll\n").Append(indent).Append("for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) v[s][u] = lut[((unsigned)(unsigned char)e.v[u] << 5) | lane_];\n");
            }
            else if (fusion?.InStatements is not null)
            {
                // The chain that made the input, applied to each element as it is loaded (xe: the element as stored).
                b.Append(indent).Append("#pragma unroll\n").Append(indent).Append("for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) {\n");
                InputChain(indent + "    ", "e.v[u]", "v[s][u]");
                b.Append(indent).Append("}\n");
            }
            else
            {
                b.Append(indent).Append("#pragma unroll\n").Append(indent).Append("for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) v[s][u] = (float)e.v[u];\n");
            }
        }

        // Each input row the thread's windows touch, once: loaded into v, then added into every output row whose window
        // holds it, at that row's filter row ki (rows between a dilated filter's taps are not loaded).
        var inputRows = ((rows - 1) * sh) + ((kh - 1) * dh) + 1;
        for (var iy = 0L; iy < inputRows; iy++)
        {
            var uses = Enumerable.Range(0, rows).Select(r => (Row: r, Offset: iy - (r * sh)))
                .Where(u => u.Offset >= 0 && u.Offset % dh == 0 && u.Offset / dh < kh).Select(u => (u.Row, Ki: u.Offset / dh)).ToList();
            if (uses.Count == 0)
            {
                continue;
            }

            b.Append("    {\n        const int yy = y0 + ").Append(KernelWriter.Lit(iy)).Append(";\n");
            b.Append("        if (yy >= 0 && yy < ").Append(ih).Append(") {\n");
            b.Append("        const ").Append(tx).Append("* xr = xb + (").Append(ix).Append(")yy * (").Append(ix).Append(")").Append(iw).Append(" * ").Append(colStride).Append(";\n");
            b.Append("        float v[").Append(KernelWriter.Lit(span)).Append("][").Append(KernelWriter.Lit(vector)).Append("];\n");

            // A thread whose columns all lie inside the row loads without a check per element; one at an edge checks each.
            // (inside: from the thread's first column, at offsets fixed in the kernel once the loop unrolls).
            b.Append("        if (inside) {\n");
            b.Append("            const ").Append(tx).Append("* xp = xr + (").Append(ix).Append(")x0 * ").Append(colStride).Append(";\n");
            b.Append("            #pragma unroll\n            for (int s = 0; s < ").Append(KernelWriter.Lit(span)).Append("; s++) {\n");
            Load("                ", $"xp + s * {colStride}");
            b.Append("            }\n        } else {\n");
            b.Append("            #pragma unroll\n            for (int s = 0; s < ").Append(KernelWriter.Lit(span)).Append("; s++) {\n");
            b.Append("                const int xx = x0 + s;\n");
            b.Append("                if (xx >= 0 && xx < ").Append(iw).Append(") {\n");
            Load("                    ", $"xr + ({ix})xx * {colStride}");
            b.Append("                } else {\n");
            b.Append("                    #pragma unroll\n                    for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) v[s][u] = 0.f;\n");
            b.Append("                }\n            }\n        }\n");
            foreach (var (row, ki) in uses)
            {
                b.Append("        #pragma unroll\n        for (int kj = 0; kj < ").Append(KernelWriter.Lit(kw)).Append("; kj++) {\n");
                if (channelsLast)
                {
                    b.Append("            const ").Append(vecType).Append(" f = *(const ").Append(vecType).Append("*)(wc + (").Append(KernelWriter.Lit(ki * kw)).Append(" + kj) * ").Append(c).Append(");\n");
                }
                else
                {
                    b.Append("            const ").Append(vecType).Append(" f = *(const ").Append(vecType).Append("*)(wc + ").Append(KernelWriter.Lit(ki * kw)).Append(" + kj);\n");
                }

                b.Append("            #pragma unroll\n            for (int o = 0; o < ").Append(KernelWriter.Lit(p)).Append("; o++) {\n");
                b.Append("                #pragma unroll\n                for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) acc[").Append(KernelWriter.Lit(row)).Append("][o][u] += v[o * ")
                    .Append(KernelWriter.Lit(sw)).Append(" + kj * ").Append(KernelWriter.Lit(dw)).Append("][u] * (float)f.v[u];\n");
                b.Append("            }\n        }\n");
            }

            b.Append("        }\n    }\n");
        }

        // Outputs: channels-last y [N, OH, OW, C]; channels-first y [N, C, OH, OW].
        b.Append("    #pragma unroll\n    for (int r = 0; r < ").Append(KernelWriter.Lit(rows)).Append("; r++) {\n");
        b.Append("    const int oy = oy0 + r;\n    if (oy >= ").Append(oh).Append(") break;\n");
        if (channelsLast)
        {
            b.Append("    ").Append(ty).Append("* yr = y + ((img * (").Append(ix).Append(")").Append(oh).Append(" + oy) * (").Append(ix).Append(")").Append(ow).Append(") * ").Append(c).Append(" + ch;\n");
        }
        else
        {
            b.Append("    ").Append(ty).Append("* yr = y + ((img * ").Append(c).Append(" + ch) * (").Append(ix).Append(")").Append(oh).Append(" + oy) * (").Append(ix).Append(")").Append(ow).Append(";\n");
        }

        b.Append("    ").Append(ty).Append("* yo = yr + (").Append(ix).Append(")ox0 * ").Append(colStride).Append(";\n");
        b.Append("    #pragma unroll\n    for (int o = 0; o < ").Append(KernelWriter.Lit(p)).Append("; o++) {\n");
        b.Append("        if (ox0 + o >= ").Append(ow).Append(") break;\n");
        b.Append("        ").Append(outVecType).Append(" rv;\n");
        var bias = fusion is { Bias: true } ? channelsLast ? " + (float)bias[ch + u]" : " + (float)bias[ch]" : string.Empty;
        if (fusion is { OutQuantize: { } quantize })
        {
            // The sum (plus the channel's bias) through what comes before the QuantizeLinear (z: the float sum), then the
            // QuantizeLinear: the quotient clamped to the saturation less the zero point, rounded to even by adding 1.5 * 2^23,
            // whose float bits less those of 1.5 * 2^23 are the rounded integer (q: the stored value less the zero point).
            b.Append("        #pragma unroll\n        for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) {\n");
            b.Append("            const float z = acc[r][o][u]").Append(bias).Append(";\n");
            b.Append("            const float zq = fminf(fmaxf(bw_qdiv(").Append(fusion.OutInput ?? "z").Append(", ").Append(F(quantize.Scale)).Append(", ").Append(F(1f / quantize.Scale)).Append("), ")
                .Append(F(quantize.Low - quantize.Zero)).Append("), ").Append(F(quantize.High - quantize.Zero)).Append(");\n");
            b.Append("            const int q = (int)(__float_as_uint(zq + 12582912.f) - 0x4B400000u);\n");
            if (outTable is { } rest)
            {
                // Entry j of the table (the stored value less its low end) for this lane: byte j & 3 of word (j >> 2) * 32 + lane.
                b.Append("            const int j = q + ").Append(KernelWriter.Lit((long)quantize.Zero - rest.Low)).Append(";\n");
                b.Append("            rv.v[u] = lut_out[((j & ~3) << 5) | (lane_ << 2) | (j & 3)];\n        }\n");
            }
            else
            {
                b.Append("            rv.v[u] = (").Append(ty).Append(")(q + ").Append(KernelWriter.Lit((long)quantize.Zero)).Append(");\n        }\n");
            }
        }
        else
        {
            // z, the sum plus the bias, or the activations after the layer over it (applied before the write).
            var value = fusion?.OutInput ?? "z";
            b.Append("        #pragma unroll\n        for (int u = 0; u < ").Append(KernelWriter.Lit(vector)).Append("; u++) { const float z = acc[r][o][u]").Append(bias).Append("; rv.v[u] = (").Append(ty).Append(")(").Append(value).Append("); }\n");
        }

        b.Append("        *(").Append(outVecType).Append("*)(yo + o * ").Append(colStride).Append(") = rv;\n");
        b.Append("    }\n    }\n    }\n");

        var biasParameter = fusion is { Bias: true } ? $"const {t}* __restrict__ bias, " : string.Empty;
        var code = w.Build($"{ty}* __restrict__ y, const {tx}* __restrict__ x, const {t}* __restrict__ wt, {biasParameter}{KernelWriter.ArgsParameter}");
        var vec = new StringBuilder(fusion?.OutQuantize is null ? string.Empty : QuotientHelper);
        foreach (var (name, elementType) in new[] { (vecType, type), (inVecType, inType), (outVecType, outType) }.DistinctBy(v => v.Item1))
        {
            vec.Append("struct __align__(").Append(KernelWriter.Lit(vector * elementType.SizeOf())).Append(") ").Append(name).Append(" { ").Append(CType(elementType)).Append(" v[").Append(KernelWriter.Lit(vector)).Append("]; };\n");
        }

        return code with { Source = vec.Append(code.Source).ToString() };
    }

    /// <summary>Threads to launch <see cref="Depthwise"/> with.</summary>
    public static long DepthwiseThreads(bool channelsLast, int vector, long batch, long channels, long[] outSpatial, int rows = 1) =>
        batch * ((outSpatial[0] + rows - 1) / rows) * ((outSpatial[1] + DepthwiseOutputsPerThread - 1) / DepthwiseOutputsPerThread) * (channelsLast ? channels / vector : channels);

    /// <summary>Channels each thread of a channels-last <see cref="Depthwise"/> handles: one 4-byte load's worth where the channel count allows it.</summary>
    public static int DepthwiseVector(ElementType type, bool channelsLast, long channels) =>
        channelsLast && type.SizeOf() == 2 && channels % 2 == 0 ? 2 : 1;
}

/// <summary>
/// What a <see cref="KernelSource.Depthwise"/> takes in beside the convolution: the chain that made its input
/// (<paramref name="InStatements"/> over <c>xe</c>, the element as stored in <paramref name="InType"/>, ending in
/// <paramref name="InResult"/>), and the QuantizeLinear that makes its output (<paramref name="OutQuantize"/>, per tensor,
/// over <paramref name="OutInput"/>: an expression over <c>z</c>, the float sum plus the channel's bias where
/// <paramref name="Bias"/>; null: z itself) — without a QuantizeLinear, <paramref name="OutInput"/> is the activations after
/// the layer, written as they give it — stored as <paramref name="OutType"/>; with <paramref name="OutTable"/> the
/// table holds what follows that QuantizeLinear).
/// </summary>
internal sealed record DepthwiseFusion(ElementType InType, string? InStatements, string? InResult, ElementType OutType, bool Bias, KernelSource.QuantRounding? OutQuantize, string? OutInput = null, QuantizedOutputTable? OutTable = null)
{
    /// <summary>Whether the input's chain runs through a table: a chain over an 8-bit input (256 values).</summary>
    public bool InputTable => InStatements is not null && InType.SizeOf() == 1;

    /// <summary>Whether the kernel holds a table (the input's or the output's), and so takes positions a grid apart.</summary>
    public bool Tables => InputTable || OutTable is not null;
}

/// <summary>
/// The quantizing chain after a depthwise layer's first QuantizeLinear where more follows it (Q -> DQ -> Clip -> Q):
/// <paramref name="Rest"/> (over qv, that QuantizeLinear's value, an integer of its range from <paramref name="Low"/>)
/// the nodes after it up to the stored output, which the kernel evaluates for each of the 256 values into a table every
/// output then reads.
/// </summary>
internal sealed record QuantizedOutputTable(int Low, string Rest);
