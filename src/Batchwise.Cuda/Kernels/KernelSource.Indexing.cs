using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Generators for indexing operators: gathers and scatters by index tensors, scans, arg-extremes, top-k, one-hot and
/// triangular masks. Ranks, axes and modes are part of a kernel's source; every size and stride is an argument.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>The opening every one-thread-per-element kernel shares: <c>i</c>, returning past <paramref name="count"/>.</summary>
    private static void ThreadIndex(KernelWriter w, string count)
    {
        w.Body.Append("    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;\n");
        w.Body.Append("    if (i >= ").Append(count).Append(") return;\n");
    }

    /// <summary>Reads index <paramref name="expr"/> into <paramref name="name"/>, wrapping a negative one by <paramref name="size"/>.</summary>
    private static string WrappedIndex(string name, string expr, string size) => $"i64 {name} = (i64)({expr}); if ({name} < 0) {name} += {size};";

    /// <summary>
    /// GatherElements: y has the indices' shape; y[c] = data[c with c[axis] = indices[c]]. Elements are moved as raw
    /// bytes of <paramref name="elementSize"/>.
    /// </summary>
    public static KernelCode GatherElements(int elementSize, ElementType indexType, long[] dataShape, long[] indexShape, int axis)
    {
        var t = MoveType(elementSize);
        var w = new KernelWriter(small: false);
        var n = w.I64("n", Count(indexShape));
        ThreadIndex(w, n);
        var b = w.Body;
        b.Append("    i64 r_ = i; i64 off = 0;\n");
        var dataStrides = Strides(dataShape);
        for (var d = indexShape.Length - 1; d >= 0; d--)
        {
            var div = w.Div("dim" + d, indexShape[d]);
            var stride = w.I64("stride" + d, dataStrides[d]);
            b.Append("    { ").Append(w.Peel(div, "r_", "c")).Append(d == axis ? " (void)c;" : $" off += c * {stride};").Append(" }\n");
        }

        var axisSize = w.I64("axis_size", dataShape[axis]);
        b.Append("    ").Append(WrappedIndex("j", "idx[i]", axisSize)).Append('\n');
        b.Append("    y[i] = data[off + j * a.stride").Append(axis).Append("];\n");
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ data, const {CType(indexType)}* __restrict__ idx, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// ScatterElements into y (already a copy of the data): y[c with c[axis] = indices[c]] = updates[c] for every
    /// coordinate c of the indices. With a reduction (add, mul, max, min) one thread applies the updates in order, as
    /// ONNX Runtime does, so repeated indices combine deterministically.
    /// </summary>
    public static KernelCode ScatterElements(ElementType type, ElementType indexType, long[] dataShape, long[] indexShape, int axis, string reduction)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", Count(indexShape));
        var b = w.Body;
        var sequential = reduction != "none";
        OpenScatter(w, n, sequential);
        b.Append("    i64 r_ = i; i64 off = 0;\n");
        var dataStrides = Strides(dataShape);
        for (var d = indexShape.Length - 1; d >= 0; d--)
        {
            var div = w.Div("dim" + d, indexShape[d]);
            var stride = w.I64("stride" + d, dataStrides[d]);
            b.Append("    { ").Append(w.Peel(div, "r_", "c")).Append(d == axis ? " (void)c;" : $" off += c * {stride};").Append(" }\n");
        }

        var axisSize = w.I64("axis_size", dataShape[axis]);
        b.Append("    ").Append(WrappedIndex("j", "idx[i]", axisSize)).Append('\n');
        b.Append("    off += j * a.stride").Append(axis).Append(";\n");
        b.Append("    ").Append(Combine(type, reduction, "y[off]", "upd[i]")).Append('\n');
        CloseScatter(w, sequential);
        var ct = CType(type);
        return w.Build($"{ct}* __restrict__ y, const {CType(indexType)}* __restrict__ idx, const {ct}* __restrict__ upd, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// ScatterND into y (already a copy of the data): each row of the last index dimension (k long) picks a slice of
    /// y, written with the matching slice of the updates; reductions run in one thread, in order.
    /// </summary>
    public static KernelCode ScatterND(ElementType type, ElementType indexType, long[] dataShape, long indexRows, int k, string reduction)
    {
        var w = new KernelWriter(small: false);
        var slice = Count(dataShape.Skip(k).ToArray());
        var n = w.I64("n", indexRows * slice);
        var sliceArg = w.I64("slice", slice);
        var b = w.Body;
        var sequential = reduction != "none";
        OpenScatter(w, n, sequential);
        b.Append("    const i64 row = i / ").Append(sliceArg).Append(", s = i - row * ").Append(sliceArg).Append(";\n");
        b.Append("    i64 off = s;\n");
        var dataStrides = Strides(dataShape);
        for (var t = 0; t < k; t++)
        {
            var dim = w.I64("dim" + t, dataShape[t]);
            var stride = w.I64("stride" + t, dataStrides[t]);
            b.Append("    { ").Append(WrappedIndex("j", $"idx[row * {KernelWriter.Lit(k)} + {KernelWriter.Lit(t)}]", dim)).Append(" off += j * ").Append(stride).Append("; }\n");
        }

        b.Append("    ").Append(Combine(type, reduction, "y[off]", "upd[i]")).Append('\n');
        CloseScatter(w, sequential);
        var ct = CType(type);
        return w.Build($"{ct}* __restrict__ y, const {CType(indexType)}* __restrict__ idx, const {ct}* __restrict__ upd, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Threads a scatter launch needs: one per update, or one for all with a reduction.</summary>
    public static long ScatterThreads(long updates, string reduction) => reduction == "none" ? updates : 1;

    private static void OpenScatter(KernelWriter w, string n, bool sequential)
    {
        if (sequential)
        {
            w.Body.Append("    if (blockIdx.x != 0 || threadIdx.x != 0) return;\n");
            w.Body.Append("    for (i64 i = 0; i < ").Append(n).Append("; i++) {\n");
        }
        else
        {
            ThreadIndex(w, n);
        }
    }

    private static void CloseScatter(KernelWriter w, bool sequential)
    {
        if (sequential)
        {
            w.Body.Append("    }\n");
        }
    }

    /// <summary>The statement that writes <paramref name="update"/> into <paramref name="target"/> with a scatter reduction.</summary>
    private static string Combine(ElementType type, string reduction, string target, string update)
    {
        var ct = CType(type);
        var c = CType(ComputeType(type));
        string V(string e) => $"(({c}){e})";
        return reduction switch
        {
            "add" => $"{target} = ({ct})({V(target)} + {V(update)});",
            "mul" => $"{target} = ({ct})({V(target)} * {V(update)});",
            "max" => $"{target} = {V(update)} > {V(target)} ? {update} : {target};",
            "min" => $"{target} = {V(update)} < {V(target)} ? {update} : {target};",
            _ => $"{target} = {update};",
        };
    }

    /// <summary>
    /// GatherND with <paramref name="batchDims"/> leading batch dimensions: each row of the last index dimension
    /// (<paramref name="k"/> long) picks a slice of the data (within its batch item), copied whole.
    /// </summary>
    public static KernelCode GatherND(int elementSize, ElementType indexType, long[] dataShape, long batches, long rowsPerBatch, int batchDims, int k)
    {
        var t = MoveType(elementSize);
        var w = new KernelWriter(small: false);
        var slice = Count(dataShape.Skip(batchDims + k).ToArray());
        var n = w.I64("n", batches * rowsPerBatch * slice);
        var sliceArg = w.I64("slice", slice);
        var perBatch = w.I64("rows_per_batch", rowsPerBatch);
        var batchSize = w.I64("batch_size", Count(dataShape.Skip(batchDims).ToArray()));
        ThreadIndex(w, n);
        var b = w.Body;
        b.Append("    const i64 row = i / ").Append(sliceArg).Append(", s = i - row * ").Append(sliceArg).Append(";\n");
        b.Append("    i64 off = (row / ").Append(perBatch).Append(") * ").Append(batchSize).Append(" + s;\n");
        var inner = Strides(dataShape.Skip(batchDims).ToArray());
        for (var d = 0; d < k; d++)
        {
            var dim = w.I64("dim" + d, dataShape[batchDims + d]);
            var stride = w.I64("stride" + d, inner[d]);
            b.Append("    { ").Append(WrappedIndex("j", $"idx[row * {KernelWriter.Lit(k)} + {KernelWriter.Lit(d)}]", dim)).Append(" off += j * ").Append(stride).Append("; }\n");
        }

        b.Append("    y[i] = data[off];\n");
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ data, const {CType(indexType)}* __restrict__ idx, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// CumSum along an axis of a tensor viewed as [outer, axis, inner]: one thread per line, in the storage type's
    /// compute type (float for half precision, exact for integers).
    /// </summary>
    public static KernelCode CumSum(ElementType type, long outer, long axisSize, long inner, bool exclusive, bool reverse)
    {
        var ct = CType(type);
        var acc = CType(ComputeType(type));
        var w = new KernelWriter(small: false);
        var n = w.I64("n", outer * inner);
        var inn = w.I64("inner", inner);
        var len = w.I64("axis", axisSize);
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 o = i / {{inn}}, s = i - o * {{inn}};
                const i64 base = o * {{len}} * {{inn}} + s;
                {{acc}} sum = 0;
                for (i64 t = 0; t < {{len}}; t++) {
                    const i64 j = {{(reverse ? $"{len} - 1 - t" : "t")}};
                    const {{acc}} v = ({{acc}})x[base + j * {{inn}}];
                    {{(exclusive ? $"y[base + j * {inn}] = ({ct})sum; sum += v;" : $"sum += v; y[base + j * {inn}] = ({ct})sum;")}}
                }

            """);
        return w.Build($"{ct}* __restrict__ y, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>ArgMax or ArgMin along an axis of [outer, axis, inner] (first or last index of ties); int64 output.</summary>
    public static KernelCode ArgExtreme(ElementType type, long outer, long axisSize, long inner, bool max, bool selectLast)
    {
        var ct = CType(type);
        var acc = CType(ComputeType(type));
        var w = new KernelWriter(small: false);
        var n = w.I64("n", outer * inner);
        var inn = w.I64("inner", inner);
        var len = w.I64("axis", axisSize);
        ThreadIndex(w, n);
        var better = (max, selectLast) switch
        {
            (true, false) => "v > best",
            (true, true) => "v >= best",
            (false, false) => "v < best",
            _ => "v <= best",
        };
        w.Body.Append($$"""
                const i64 o = i / {{inn}}, s = i - o * {{inn}};
                const i64 base = o * {{len}} * {{inn}} + s;
                {{acc}} best = ({{acc}})x[base];
                i64 at = 0;
                for (i64 j = 1; j < {{len}}; j++) {
                    const {{acc}} v = ({{acc}})x[base + j * {{inn}}];
                    if ({{better}}) { best = v; at = j; }
                }
                y[i] = at;

            """);
        return w.Build($"long long* __restrict__ y, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// TopK along an axis of [outer, axis, inner]: one warp per line picks the k largest (or smallest) values in order,
    /// ties to the lower index as ONNX specifies, each pick a warp-wide reduction of the elements after the previous pick.
    /// </summary>
    public static KernelCode TopK(ElementType type, long outer, long axisSize, long inner, long k, bool largest)
    {
        var ct = CType(type);
        var w = new KernelWriter(small: false);
        var lines = w.I64("lines", outer * inner);
        var inn = w.I64("inner", inner);
        var len = w.I64("axis", axisSize);
        var kk = w.I64("k", k);

        // "a before b" in the output order: greater (largest) or smaller value first, then lower index.
        var gt = largest ? ">" : "<";
        w.Body.Append($$"""
                const i64 line = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
                const int lane = threadIdx.x & 31;
                if (line >= {{lines}}) return;
                const i64 o = line / {{inn}}, s = line - o * {{inn}};
                const i64 base = o * {{len}} * {{inn}} + s;
                const i64 outBase = o * {{kk}} * {{inn}} + s;
                float pv = 0.f; i64 pi = -1;
                for (i64 t = 0; t < {{kk}}; t++) {
                    float bv = 0.f; i64 bi = -1;
                    for (i64 j = lane; j < {{len}}; j += 32) {
                        const float v = (float)x[base + j * {{inn}}];
                        const bool after = pi < 0 || v {{(largest ? "<" : ">")}} pv || (v == pv && j > pi);
                        if (after && (bi < 0 || v {{gt}} bv || (v == bv && j < bi))) { bv = v; bi = j; }
                    }
                    for (int m = 16; m > 0; m >>= 1) {
                        const float ov = __shfl_xor_sync(0xffffffffu, bv, m);
                        const i64 oi = __shfl_xor_sync(0xffffffffu, bi, m);
                        if (oi >= 0 && (bi < 0 || ov {{gt}} bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
                    }
                    if (bi < 0) bi = 0;
                    if (lane == 0) {
                        values[outBase + t * {{inn}}] = x[base + bi * {{inn}}];
                        indices[outBase + t * {{inn}}] = bi;
                    }
                    pv = bv; pi = bi;
                }

            """);
        return w.Build($"{ct}* __restrict__ values, long long* __restrict__ indices, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// OneHot: y viewed as [outer, depth, inner] is values[1] where the index at [outer, inner] (negative ones wrap by
    /// depth) equals the position along depth, values[0] elsewhere; elements move as raw bytes.
    /// </summary>
    public static KernelCode OneHot(int elementSize, ElementType indexType, long outer, long depth, long inner)
    {
        var t = MoveType(elementSize);
        var w = new KernelWriter(small: false);
        var n = w.I64("n", outer * depth * inner);
        var inn = w.I64("inner", inner);
        var dep = w.I64("depth", depth);
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 s = i % {{inn}}, rest = i / {{inn}};
                const i64 d = rest % {{dep}}, o = rest / {{dep}};
                i64 k = (i64)idx[o * {{inn}} + s];
                if (k < 0) k += {{dep}};
                y[i] = k == d ? values[1] : values[0];

            """);
        return w.Build($"{t}* __restrict__ y, const {CType(indexType)}* __restrict__ idx, const {t}* __restrict__ values, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Trilu over the last two dimensions [rows, cols]: elements on or above (upper) or below the k-th diagonal kept, the
    /// rest zero; k is read from device memory (an int64 scalar, or 0 without one), so it may be computed by the graph.
    /// </summary>
    public static KernelCode Trilu(int elementSize, long count, long rows, long cols, bool upper)
    {
        var t = MoveType(elementSize);
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var c = w.I64("cols", cols);
        var r = w.I64("rows", rows);
        ThreadIndex(w, n);
        w.Body.Append($$"""
                const i64 k = kp ? kp[0] : 0;
                const i64 col = i % {{c}}, row = (i / {{c}}) % {{r}};
                y[i] = (col - row {{(upper ? ">=" : "<=")}} k) ? x[i] : ({{t}})0;

            """);
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, const long long* __restrict__ kp, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Threads of the one block each NonZero kernel runs (a power of two: the reductions halve it). NonZero runs as two
    /// kernels of one block each (correctness first: one block scans the whole input in order): the count, which the
    /// host reads back to size the output (a host synchronisation), and the coordinates, written in row-major order
    /// once the plan knows the count.
    /// </summary>
    public const int NonZeroBlock = 256;

    /// <summary>The C test for "element i of x is not zero" (NaN counts as not zero, as in ONNX's reference).</summary>
    private static string IsNonZero(ElementType type, string element) => type switch
    {
        ElementType.Float16 or ElementType.BFloat16 => $"((float)({element}) != 0.f)",
        ElementType.Bool => $"({element})",
        _ => $"(({element}) != 0)",
    };

    /// <summary>NonZero's count: the number of non-zero elements of x, written as one int64 to <c>count[0]</c>.</summary>
    public static KernelCode NonZeroCount(ElementType type, long count)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", count);
        var b = w.Body;
        b.Append("    __shared__ i64 part[").Append(NonZeroBlock).Append("];\n");
        b.Append("    i64 c = 0;\n");
        b.Append("    for (i64 i = threadIdx.x; i < ").Append(n).Append("; i += blockDim.x) c += ").Append(IsNonZero(type, "x[i]")).Append(" ? 1 : 0;\n");
        b.Append("    part[threadIdx.x] = c;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) { if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s]; __syncthreads(); }\n");
        b.Append("    if (threadIdx.x == 0) count[0] = part[0];\n");
        return w.Build($"i64* __restrict__ count, const {CType(type)}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// NonZero's coordinates, y of shape [rank, nonzero]: the block walks x in chunks of its size, an inclusive scan of
    /// the chunk's non-zero flags gives each element its place after the chunks before, and its coordinates go to
    /// y[d * nonzero + place]. Places at or past <paramref name="nonzero"/> are not written (the count read earlier
    /// bounds them).
    /// </summary>
    public static KernelCode NonZeroIndices(ElementType type, long[] shape, long nonzero)
    {
        var w = new KernelWriter(small: false);
        var n = w.I64("n", Count(shape));
        var stride = w.I64("stride", nonzero);
        var dims = shape.Select((d, i) => w.I64("dim" + i, d)).ToArray();
        var b = w.Body;
        b.Append("    __shared__ i64 scan[").Append(NonZeroBlock).Append("];\n");
        b.Append("    __shared__ i64 before;\n");
        b.Append("    if (threadIdx.x == 0) before = 0;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    for (i64 start = 0; start < ").Append(n).Append("; start += blockDim.x)\n    {\n");
        b.Append("        const i64 i = start + threadIdx.x;\n");
        b.Append("        const int f = i < ").Append(n).Append(" && ").Append(IsNonZero(type, "x[i]")).Append(" ? 1 : 0;\n");
        b.Append("        scan[threadIdx.x] = f;\n");
        b.Append("        __syncthreads();\n");
        b.Append("        for (unsigned o = 1; o < blockDim.x; o <<= 1)\n        {\n");
        b.Append("            const i64 v = threadIdx.x >= o ? scan[threadIdx.x - o] : 0;\n");
        b.Append("            __syncthreads();\n");
        b.Append("            scan[threadIdx.x] += v;\n");
        b.Append("            __syncthreads();\n");
        b.Append("        }\n");
        b.Append("        const i64 place = before + scan[threadIdx.x] - 1;\n");
        b.Append("        if (f && place < ").Append(stride).Append(")\n        {\n");
        b.Append("            i64 r_ = i;\n");
        for (var d = shape.Length - 1; d >= 0; d--)
        {
            b.Append("            { const i64 q_ = r_ / ").Append(dims[d]).Append("; y[").Append(d).Append(" * ").Append(stride).Append(" + place] = r_ - q_ * ").Append(dims[d]).Append("; r_ = q_; }\n");
        }

        b.Append("        }\n");
        b.Append("        __syncthreads();\n");
        b.Append("        if (threadIdx.x == blockDim.x - 1) before += scan[threadIdx.x];\n");
        b.Append("        __syncthreads();\n");
        b.Append("    }\n");
        return w.Build($"i64* __restrict__ y, const {CType(type)}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }
}
