using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Row kernels at bandwidth for rows of up to <see cref="MaxRowRegisters"/> x 32 elements: a warp per row reads its row
/// once, in 16-byte loads, into registers, and writes it once (LayerNormalization, Softmax over the last axis).
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Most elements of a row one lane holds in registers.</summary>
    public const int MaxRowRegisters = 32;

    /// <summary>
    /// The elements per load (16 bytes' worth that divide <paramref name="cols"/>) and loads per lane for a row of
    /// <paramref name="cols"/>, or null where a lane would hold more than <see cref="MaxRowRegisters"/>.
    /// </summary>
    public static (int Vector, int Loads)? RowLayout(ElementType type, long cols)
    {
        var vector = RowVector(type, cols);
        var loads = (cols + (32L * vector) - 1) / (32L * vector);
        return cols > 0 && loads * vector <= MaxRowRegisters ? (vector, (int)loads) : null;
    }

    /// <summary>Elements per load: 16 bytes' worth, halved until they divide <paramref name="cols"/>.</summary>
    private static int RowVector(ElementType type, long cols)
    {
        var vector = 16 / type.SizeOf();
        while (vector > 1 && cols % vector != 0)
        {
            vector /= 2;
        }

        return vector;
    }

    /// <summary>
    /// A one-warp-per-row kernel's writer, its body started: the row and lane, the row's input and output pointers
    /// (<c>xr</c>, <c>yr</c>) and the row in registers (<see cref="LoadRow"/>, or <see cref="LoadFusedRow"/> with
    /// <paramref name="input"/>: no <c>xr</c> then); returns the layout and the columns' field.
    /// </summary>
    private static (KernelWriter W, int Vector, int Loads, string Cols) RowKernel(string kernel, ElementType type, long rows, long cols, string? outType = null, FusedRowInput? input = null)
    {
        var (vector, loads) = RowLayout(type, cols) ?? throw new ArgumentException($"{kernel}: {cols} columns do not fit registers");
        var t = CType(type);
        var w = new KernelWriter(KernelWriter.Fits32((rows * cols) + (32L * vector * loads)));
        var ix = w.Idx;
        var r = w.Size("rows", rows);
        var c = w.Size("cols", cols);
        w.Body.Append($$"""
                const {{ix}} row = (({{ix}})blockIdx.x * blockDim.x + threadIdx.x) >> 5;
                const unsigned lane = threadIdx.x & 31;
                if (row >= {{r}}) return;
                {{(input is null ? $"const {t}* xr = x + row * {c};" : string.Empty)}}
                {{outType ?? t}}* yr = y + row * {{c}};

            """);
        w.Body.Append(input is null ? LoadRow(t, Name + "_vec", vector, loads, ix, c) : LoadFusedRow(w, input, vector, loads, c));
        return (w, vector, loads, c);
    }

    /// <summary>
    /// The row held in registers as <see cref="LoadRow"/> holds it, computed from <paramref name="input"/>'s leaves as they
    /// are loaded: each leaf's row found (its offset from the row's coordinates over the outer dimensions, or a table row
    /// by the row's index), each load of every leaf read, the statements run per element.
    /// </summary>
    private static string LoadFusedRow(KernelWriter w, FusedRowInput input, int vector, int loads, string cols)
    {
        var ix = w.Idx;
        var lit = KernelWriter.Lit(vector);
        var text = new System.Text.StringBuilder();
        var dims = input.OuterDims;
        var needed = Enumerable.Range(0, dims.Length).Where(d => input.Leaves.Any(l => l.Index is null && l.OuterStrides[d] != 0)).ToList();
        if (needed.Count > 0)
        {
            // The row's coordinates over the outer dimensions, the last fastest.
            text.Append($"    long long rest_ = (long long)row;\n");
            for (var d = dims.Length - 1; d >= needed.Min(); d--)
            {
                var size = w.Size($"dim{d}", dims[d]);
                text.Append($"    const long long at{d} = rest_ % (long long){size}; rest_ /= (long long){size};\n");
            }
        }

        for (var k = 0; k < input.Leaves.Count; k++)
        {
            var leaf = input.Leaves[k];
            var kk = KernelWriter.Lit(k);
            if (leaf.Index is { } index)
            {
                var tableRows = w.Size($"table{kk}", index.Rows);
                text.Append($"    long long i{kk} = (long long)g{kk}[row]; if (i{kk} < 0) i{kk} += (long long){tableRows};\n");
                text.Append($"    const bool ok{kk} = i{kk} >= 0 && i{kk} < (long long){tableRows};\n");
                text.Append($"    const {CType(leaf.Type)}* lr{kk} = l{kk} + (ok{kk} ? i{kk} : 0) * (long long){cols};\n");
            }
            else
            {
                var offset = string.Join(" + ", Enumerable.Range(0, dims.Length).Where(d => leaf.OuterStrides[d] != 0).Select(d => $"at{d} * (long long){w.Size($"stride{kk}_{d}", leaf.OuterStrides[d])}").DefaultIfEmpty("0"));
                text.Append($"    const bool ok{kk} = true;\n");
                text.Append($"    const {CType(leaf.Type)}* lr{kk} = l{kk} + ({offset});\n");
            }
        }

        text.Append($$"""
                float v[{{KernelWriter.Lit(loads)}}][{{lit}}];
                #pragma unroll
                for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                    const {{ix}} at = (({{ix}})it * 32 + lane) * {{lit}};
                    if (at < {{cols}}) {

            """);
        for (var k = 0; k < input.Leaves.Count; k++)
        {
            var kk = KernelWriter.Lit(k);
            text.Append($"            {Name}_leaf{kk} e{kk}; if (ok{kk}) e{kk} = *(const {Name}_leaf{kk}*)(lr{kk} + at); else {{ for (int u = 0; u < {lit}; u++) e{kk}.v[u] = ({CType(input.Leaves[k].Type)})0.f; }}\n");
        }

        text.Append($$"""
                        #pragma unroll
                        for (int u = 0; u < {{lit}}; u++) {
            {{input.Statements}}
                            v[it][u] = (float)({{input.Result}});
                        }
                    } else {
                        #pragma unroll
                        for (int u = 0; u < {{lit}}; u++) v[it][u] = 0.f;
                    }
                }

            """);
        return text.ToString();
    }

    /// <summary>The kernel parameters and vector types of <paramref name="input"/>'s leaves (each its row pointer, a gathered one its indices too).</summary>
    private static (string Parameters, string Types) FusedRowParameters(FusedRowInput input, int vector)
    {
        var parameters = new System.Text.StringBuilder();
        var types = new System.Text.StringBuilder();
        for (var k = 0; k < input.Leaves.Count; k++)
        {
            var leaf = input.Leaves[k];
            var kk = KernelWriter.Lit(k);
            parameters.Append($"const {CType(leaf.Type)}* __restrict__ l{kk}, ");
            if (leaf.Index is { } index)
            {
                parameters.Append($"const {CType(index.Type)}* __restrict__ g{kk}, ");
            }

            types.Append($"struct __align__({KernelWriter.Lit(Math.Min(16, vector * leaf.Type.SizeOf()))}) {Name}_leaf{kk} {{ {CType(leaf.Type)} v[{KernelWriter.Lit(vector)}]; }};\n");
        }

        return (parameters.ToString(), types.ToString());
    }

    /// <summary>The row held in registers: <c>v[loads][vector]</c>, zero past the row's end; <c>valid(it)</c> says whether load it is in the row.</summary>
    private static string LoadRow(string t, string vec, int vector, int loads, string ix, string cols) => $$"""
            float v[{{KernelWriter.Lit(loads)}}][{{KernelWriter.Lit(vector)}}];
            #pragma unroll
            for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                const {{ix}} at = (({{ix}})it * 32 + lane) * {{KernelWriter.Lit(vector)}};
                if (at < {{cols}}) {
                    const {{vec}} e = *(const {{vec}}*)(xr + at);
                    #pragma unroll
                    for (int u = 0; u < {{KernelWriter.Lit(vector)}}; u++) v[it][u] = (float)e.v[u];
                } else {
                    #pragma unroll
                    for (int u = 0; u < {{KernelWriter.Lit(vector)}}; u++) v[it][u] = 0.f;
                }
            }

        """;

    /// <summary>
    /// LayerNorm's write of a row held in registers (<c>v</c>, <c>mean</c> and <c>inv</c> computed): each of the thread's
    /// <paramref name="loads"/> vectors, <paramref name="stride"/> vectors apart, scaled, shifted and stored, and the row's
    /// Mean and InvStdDev by its first lane.
    /// </summary>
    private static string NormalizedRowWrite(string loads, string stride, string ix, string lit, string c, string t, string vec, string pvec, bool hasBias, string? quantized = null) => $$"""
            #pragma unroll
            for (int it = 0; it < {{loads}}; it++) {
                const {{ix}} at = (({{ix}})it * {{stride}} + lane) * {{lit}};
                if (at >= {{c}}) continue;
                const {{pvec}} g = *(const {{pvec}}*)(scale + at);
                {{pvec}} b;
                {{(hasBias ? $"b = *(const {pvec}*)(bias + at);" : $"for (int u = 0; u < {lit}; u++) b.v[u] = 0.f;")}}
                {{(quantized is null ? vec : Name + "_qvec")}} o;
                #pragma unroll
                for (int u = 0; u < {{lit}}; u++) o.v[u] = {{(quantized is null ? $"({t})((v[it][u] - mean) * inv * (float)g.v[u] + (float)b.v[u])" : quantized)}};
                *({{(quantized is null ? vec : Name + "_qvec")}}*)(yr + at) = o;
            }
            if (lane == 0) {
                if (meanOut) meanOut[row] = mean;
                if (invStdOut) invStdOut[row] = inv;
            }

        """;

    /// <summary>
    /// Layer normalisation over rows of <paramref name="cols"/> elements with scale and bias of <paramref name="cols"/>
    /// each (see <see cref="RowLayout"/> for the sizes it takes): mean, then variance from the registers, then one write;
    /// optional Mean and InvStdDev outputs. One warp per row.
    /// </summary>
    /// <para>
    /// With <paramref name="quantize"/> (a QuantizeLinear that alone reads the output: its scale, zero point and type),
    /// each value is quantized as ONNX does, rint(v / scale) + zero saturated to the type's range, and written as the int8
    /// byte of that less the shift its type is stored with (128 for uint8): y is then signed char.
    /// </para>
    /// <para>
    /// With <paramref name="input"/> the row is computed as it is loaded (<see cref="FusedRowInput"/>: an embedding sum's
    /// gathered and broadcast rows; x is then not a parameter, the leaves' pointers follow invStdOut); with
    /// <paramref name="outputType"/> y is stored as that type (a float graph output of a half plan, written once).
    /// </para>
    public static KernelCode LayerNormRows(ElementType type, ElementType paramType, ElementType statType, long rows, long cols, double epsilon, bool hasBias, (double Scale, double Zero, ElementType Type)? quantize = null, FusedRowInput? input = null, ElementType? outputType = null)
    {
        var yType = outputType ?? type;
        var (w, vector, loads, c) = RowKernel("LayerNormRows", type, rows, cols, quantize is null ? CType(yType) : "signed char", input);
        var t = CType(yType);
        var pt = CType(paramType);
        var ix = w.Idx;
        var vec = yType == type ? Name + "_vec" : Name + "_yvec";
        var pvec = Name + "_pvec";
        var lit = KernelWriter.Lit(vector);
        w.Body.Append($$"""
                float s = 0.f;
                #pragma unroll
                for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) s += v[it][u];
                }
                const float mean = bw_warp_sum(s) / (float){{c}};
                float q = 0.f;
                #pragma unroll
                for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                    if ((({{ix}})it * 32 + lane) * {{lit}} >= {{c}}) continue;
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) { const float d = v[it][u] - mean; q += d * d; }
                }
                const float inv = 1.f / sqrtf(bw_warp_sum(q) / (float){{c}} + {{F(epsilon)}});

            """);
        var quantized = quantize is { } q ? StoredQuantized(w, "(v[it][u] - mean) * inv * (float)g.v[u] + (float)b.v[u]", q) : null;

        w.Body.Append(NormalizedRowWrite(KernelWriter.Lit(loads), "32", ix, lit, c, t, vec, pvec, hasBias, quantized));
        var (leafParameters, leafTypes) = input is null ? (string.Empty, string.Empty) : FusedRowParameters(input, vector);
        var xParameter = input is null ? $"const {CType(type)}* __restrict__ x, " : string.Empty;
        var code = w.Build($"{(quantize is null ? t : "signed char")}* __restrict__ y, {xParameter}const {pt}* __restrict__ scale, const {pt}* __restrict__ bias, {CType(statType)}* __restrict__ meanOut, {CType(statType)}* __restrict__ invStdOut, {leafParameters}{KernelWriter.ArgsParameter}");
        code = WithVector(code, CType(type), vector * type.SizeOf(), vector);
        var outputVector = yType == type ? string.Empty : $"struct __align__({KernelWriter.Lit(Math.Min(16, vector * yType.SizeOf()))}) {vec} {{ {t} v[{lit}]; }};\n";
        var quantizedVector = quantize is null ? string.Empty : $"struct __align__({KernelWriter.Lit(vector)}) {Name}_qvec {{ signed char v[{lit}]; }};\n";
        return code with { Source = $"struct __align__({KernelWriter.Lit(vector * paramType.SizeOf())}) {pvec} {{ {pt} v[{lit}]; }};\n" + quantizedVector + outputVector + leafTypes + code.Source };
    }

    /// <summary>
    /// The warps per row (2 to 8, a power of two) that hold a row of <paramref name="cols"/> in registers for
    /// <see cref="LayerNormWideRows"/> (rows of 1,025 to 8,192 half or float elements), or null.
    /// </summary>
    public static int? WideRowWarps(ElementType type, long cols)
    {
        var vector = RowVector(type, cols);
        for (var warps = 2; warps <= BlockSize / 32; warps *= 2)
        {
            if (cols > 0 && ((cols + (32L * warps * vector) - 1) / (32L * warps * vector)) * vector <= MaxRowRegisters)
            {
                return warps;
            }
        }

        return null;
    }

    /// <summary>
    /// <see cref="LayerNormRows"/> for rows too wide for one warp's registers: <paramref name="warps"/> warps of a block
    /// per row (<see cref="WideRowWarps"/>), the row read once in 16-byte loads into registers, the sums exchanged
    /// through shared memory, written once. Threads past the last row take part in the barriers and touch nothing.
    /// </summary>
    public static KernelCode LayerNormWideRows(ElementType type, ElementType paramType, ElementType statType, long rows, long cols, double epsilon, bool hasBias, int warps)
    {
        var vector = RowVector(type, cols);
        var width = 32 * warps;
        var loads = (int)((cols + ((long)width * vector) - 1) / ((long)width * vector));
        var t = CType(type);
        var pt = CType(paramType);
        var w = new KernelWriter(KernelWriter.Fits32((rows * cols) + ((long)width * vector * loads)));
        var ix = w.Idx;
        var r = w.Size("rows", rows);
        var c = w.Size("cols", cols);
        var vec = Name + "_vec";
        var pvec = Name + "_pvec";
        var lit = KernelWriter.Lit(vector);
        var n = KernelWriter.Lit(loads);
        var wl = KernelWriter.Lit(warps);
        var step = KernelWriter.Lit(width);
        w.Body.Append($$"""
                __shared__ float part[{{KernelWriter.Lit(BlockSize / 32)}}];
                const unsigned warp = threadIdx.x >> 5;
                const unsigned first = warp / {{wl}} * {{wl}};
                const unsigned lane = threadIdx.x - first * 32; // 0 .. {{KernelWriter.Lit(width - 1)}} within the row's warps
                const {{ix}} row = (({{ix}})blockIdx.x * blockDim.x + threadIdx.x) / {{step}};
                const bool live = row < {{r}};
                const {{t}}* xr = x + (live ? row : 0) * {{c}};
                {{t}}* yr = y + (live ? row : 0) * {{c}};
                float v[{{n}}][{{lit}}];
                #pragma unroll
                for (int it = 0; it < {{n}}; it++) {
                    const {{ix}} at = (({{ix}})it * {{step}} + lane) * {{lit}};
                    if (live && at < {{c}}) {
                        const {{vec}} e = *(const {{vec}}*)(xr + at);
                        #pragma unroll
                        for (int u = 0; u < {{lit}}; u++) v[it][u] = (float)e.v[u];
                    } else {
                        #pragma unroll
                        for (int u = 0; u < {{lit}}; u++) v[it][u] = 0.f;
                    }
                }
                float s = 0.f;
                #pragma unroll
                for (int it = 0; it < {{n}}; it++) {
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) s += v[it][u];
                }
                s = bw_warp_sum(s);
                if ((threadIdx.x & 31) == 0) part[warp] = s;
                __syncthreads();
                s = 0.f;
                for (unsigned k = 0; k < {{wl}}; k++) s += part[first + k];
                __syncthreads();
                const float mean = s / (float){{c}};
                float q = 0.f;
                #pragma unroll
                for (int it = 0; it < {{n}}; it++) {
                    if ((({{ix}})it * {{step}} + lane) * {{lit}} >= {{c}}) continue;
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) { const float d = v[it][u] - mean; q += d * d; }
                }
                q = bw_warp_sum(q);
                if ((threadIdx.x & 31) == 0) part[warp] = q;
                __syncthreads();
                q = 0.f;
                for (unsigned k = 0; k < {{wl}}; k++) q += part[first + k];
                const float inv = 1.f / sqrtf(q / (float){{c}} + {{F(epsilon)}});
                if (!live) return;

            """);
        w.Body.Append(NormalizedRowWrite(n, step, ix, lit, c, t, vec, pvec, hasBias));
        var code = w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, const {pt}* __restrict__ scale, const {pt}* __restrict__ bias, {CType(statType)}* __restrict__ meanOut, {CType(statType)}* __restrict__ invStdOut, {KernelWriter.ArgsParameter}");
        code = WithVector(code, t, vector * type.SizeOf(), vector);
        return code with { Source = $"struct __align__({KernelWriter.Lit(vector * paramType.SizeOf())}) {pvec} {{ {pt} v[{lit}]; }};\n" + code.Source };
    }

    /// <summary>Softmax (or log-softmax) over contiguous rows of <paramref name="cols"/> elements held in registers (see <see cref="RowLayout"/>); one warp per row.</summary>
    public static KernelCode SoftmaxRows(ElementType type, long rows, long cols, bool log)
    {
        var (w, vector, loads, c) = RowKernel("SoftmaxRows", type, rows, cols);
        var t = CType(type);
        var ix = w.Idx;
        var vec = Name + "_vec";
        var lit = KernelWriter.Lit(vector);
        w.Body.Append($$"""
                float m = -1.f / 0.f;
                #pragma unroll
                for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                    if ((({{ix}})it * 32 + lane) * {{lit}} >= {{c}}) continue;
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) m = fmaxf(m, v[it][u]);
                }
                m = bw_warp_max(m);
                float s = 0.f;
                #pragma unroll
                for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                    if ((({{ix}})it * 32 + lane) * {{lit}} >= {{c}}) continue;
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) { {{(log ? "s += expf(v[it][u] - m);" : "v[it][u] = expf(v[it][u] - m); s += v[it][u];")}} }
                }
                s = bw_warp_sum(s);
                const float k = {{(log ? "logf(s)" : "1.f / s")}};
                #pragma unroll
                for (int it = 0; it < {{KernelWriter.Lit(loads)}}; it++) {
                    const {{ix}} at = (({{ix}})it * 32 + lane) * {{lit}};
                    if (at >= {{c}}) continue;
                    {{vec}} o;
                    #pragma unroll
                    for (int u = 0; u < {{lit}}; u++) o.v[u] = ({{t}})({{(log ? "v[it][u] - m - k" : "v[it][u] * k")}});
                    *({{vec}}*)(yr + at) = o;
                }

            """);
        return WithVector(w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, {KernelWriter.ArgsParameter}"), t, vector * type.SizeOf(), vector);
    }
}

/// <summary>
/// A row kernel's input computed as the row is loaded, not read from a written tensor (LayerNorm over an embedding sum:
/// word + position + token type rows): <paramref name="Leaves"/> read per row, <paramref name="Statements"/> over their
/// elements (leaf k's element u as <c>ek.v[u]</c>) ending in <paramref name="Result"/>.
/// </summary>
/// <param name="Leaves">What the kernel reads, in parameter order.</param>
/// <param name="OuterDims">The shape before the normalised axis: a row's coordinates over it place the broadcast leaves.</param>
/// <param name="Statements">The elementwise chain's statements, one a line.</param>
/// <param name="Result">The name of the chain's result.</param>
internal sealed record FusedRowInput(IReadOnlyList<FusedRowLeaf> Leaves, long[] OuterDims, string Statements, string Result);

/// <summary>
/// One leaf of a <see cref="FusedRowInput"/>, stored as <paramref name="Type"/>: a row-major value whose row for a row at
/// coordinates (c0, c1, ...) starts at sum(c_d * OuterStrides[d]) (0 where it is broadcast), or, with
/// <paramref name="Index"/>, a table row chosen by the row's index (a Gather of an embedding table: the index type and the
/// table's row count; an index out of range reads zeros, as the Gather kernel writes them).
/// </summary>
internal sealed record FusedRowLeaf(ElementType Type, long[] OuterStrides, (ElementType Type, long Rows)? Index = null);
