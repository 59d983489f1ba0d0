using System.Text;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Coalesced reductions of an [outer, reduced, inner] view over its middle axis (what a reduction over any contiguous run
/// of axes becomes once neighbouring axes are merged): the spatial mean of a channels-last [N, H*W, C] activation (an SE
/// block's ReduceMean, GlobalAveragePool) has threads along the channels; a reduction over trailing axes has a warp or a
/// block per row.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="ReduceColumns"/>: 32 lanes along the kept inner axis by 8 along the reduced one.</summary>
    public const int ReduceColumnRows = 8;

    /// <summary>The reductions <see cref="ReduceColumns"/> and <see cref="ReduceRows"/> compute (floating-point storage only).</summary>
    public static bool CoalescedReduction(string kind, ElementType type) =>
        kind is "mean" or "sum" or "max" or "min" or "l1" or "l2" or "sumsquare" or "logsum" or "prod"
        && type is ElementType.Float or ElementType.Float16 or ElementType.BFloat16;

    private static (string Init, string Step, string Combine, string Result) ReductionParts(string kind, string count) => kind switch
    {
        "max" => (F(double.NegativeInfinity), "z = fmaxf(z, v);", "fmaxf(z, z2)", "z"),
        "min" => (F(double.PositiveInfinity), "z = fminf(z, v);", "fminf(z, z2)", "z"),
        "prod" => ("1.f", "z *= v;", "z * z2", "z"),
        "l1" => ("0.f", "z += fabsf(v);", "z + z2", "z"),
        "sumsquare" => ("0.f", "z += v * v;", "z + z2", "z"),
        "l2" => ("0.f", "z += v * v;", "z + z2", "sqrtf(z)"),
        "logsum" => ("0.f", "z += v;", "z + z2", "logf(z)"),
        "mean" => ("0.f", "z += v;", "z + z2", $"z / (float){count}"),
        _ => ("0.f", "z += v;", "z + z2", "z"),
    };

    /// <summary>
    /// Reduces x [outer, reduced, inner] over the middle axis into y [outer, inner]. A 256-thread block covers one outer
    /// index, 32 x <paramref name="vector"/> inner elements (neighbouring lanes on neighbouring elements, one
    /// <paramref name="vector"/>-element load each) and one of <paramref name="splits"/> ranges of the reduced axis; its 8
    /// rows of lanes stride over that range and meet in shared memory. With one split the block writes y; with more
    /// (<paramref name="partial"/>) it writes its float partial result to y as [splits, outer, inner], and
    /// <see cref="ReduceSplits"/> finishes (so a spatial mean over 112 x 112 at batch 1 runs on a few hundred blocks, not one).
    /// Max and min ignore NaN as fmaxf does: inputs are expected finite. With <paramref name="input"/> x is the value an
    /// elementwise chain makes <paramref name="type"/> from (a DequantizeLinear of an int8 activation), the chain applied
    /// to each element as it is loaded.
    /// </summary>
    public static KernelCode ReduceColumns(ElementType type, string kind, int vector, long outer, long reduced, long inner, long splits = 1, bool partial = false, ReductionInput? input = null)
    {
        var inType = input?.Type ?? type;
        if (!CoalescedReduction(kind, type) || vector is not (1 or 2 or 4 or 8) || vector * inType.SizeOf() > 16 || inner % vector != 0 || splits < 1 || (splits > 1 && !partial))
        {
            throw new ArgumentException($"ReduceColumns: {kind} over {type}, vector {vector}, inner {inner}, splits {splits}");
        }

        var t = CType(type);
        var xt = CType(inType);
        var yt = partial ? "float" : t;
        var w = new KernelWriter(KernelWriter.Fits32((outer * reduced * inner) + inner) && KernelWriter.Fits32(splits * outer * inner));
        var ix = w.Idx;
        var chunks = ((inner / vector) + 31) / 32;
        var chunkDiv = w.Div("chunks", chunks);
        var splitDiv = w.Div("splits", splits);
        var o = w.Size("outer", outer);
        var rN = w.Size("reduced", reduced);
        var per = w.Size("per", (reduced + splits - 1) / splits);
        var inn = w.Size("inner", inner);
        var (init, step, combine, result) = ReductionParts(kind, rN);
        var vec = Name + "_vec";
        var yvec = partial ? Name + "_fvec" : inType == type ? vec : Name + "_yvec";
        var v = KernelWriter.Lit(vector);
        w.Body.Append($$"""
                __shared__ float part[{{KernelWriter.Lit(ReduceColumnRows)}}][32 * {{v}}];
                {{ix}} blk = blockIdx.x;
                {{w.Peel(chunkDiv, "blk", "chunk")}}
                {{w.Peel(splitDiv, "blk", "split")}}
                if (blk >= {{o}}) return;
                const unsigned lane = threadIdx.x & 31, row = threadIdx.x >> 5;
                const {{ix}} col = (chunk * 32 + lane) * {{v}};
                const {{ix}} first = split * {{per}};
                const {{ix}} end = first + {{per}} < {{rN}} ? first + {{per}} : {{rN}};
                float acc[{{v}}];
                #pragma unroll
                for (int u = 0; u < {{v}}; u++) acc[u] = {{init}};
                if (col < {{inn}}) {
                    const {{xt}}* xp = x + blk * {{rN}} * {{inn}} + col;
                    #pragma unroll 4
                    for ({{ix}} j = first + row; j < end; j += {{KernelWriter.Lit(ReduceColumnRows)}}) {
                        const {{vec}} e = *(const {{vec}}*)(xp + j * {{inn}});
                        #pragma unroll
                        for (int u = 0; u < {{v}}; u++) { float z = acc[u]; {{Loaded(input, "e.v[u]")}} {{step}} acc[u] = z; }
                    }
                }
                #pragma unroll
                for (int u = 0; u < {{v}}; u++) part[row][lane * {{v}} + u] = acc[u];
                __syncthreads();
                if (row != 0 || col >= {{inn}}) return;
                {{yvec}} r;
                #pragma unroll
                for (int u = 0; u < {{v}}; u++) {
                    float z = part[0][lane * {{v}} + u];
                    for (int k = 1; k < {{KernelWriter.Lit(ReduceColumnRows)}}; k++) { const float z2 = part[k][lane * {{v}} + u]; z = {{combine}}; }
                    r.v[u] = ({{yt}})({{(partial ? "z" : result)}});
                }
                *({{yvec}}*)(y + (split * {{o}} + blk) * {{inn}} + col) = r;

            """);
        var code = WithVector(w.Build($"{yt}* __restrict__ y, const {xt}* __restrict__ x, {KernelWriter.ArgsParameter}"), xt, vector * inType.SizeOf(), vector);
        return partial ? code with { Source = $"struct __align__({KernelWriter.Lit(vector * 4)}) {Name}_fvec {{ float v[{v}]; }};\n" + code.Source }
            : yvec != vec ? code with { Source = $"struct __align__({KernelWriter.Lit(vector * type.SizeOf())}) {Name}_yvec {{ {t} v[{v}]; }};\n" + code.Source }
            : code;
    }

    /// <summary>
    /// The widest load <see cref="ReduceColumns"/> takes of an [outer, reduced, inner] value stored in <paramref name="type"/>:
    /// up to 16 bytes a lane where the inner axis divides, so a warp reads whole 128-byte lines of an 8-bit activation
    /// (one byte a lane read 32); two elements for half precision, one for float32, as before.
    /// </summary>
    public static int ReduceColumnVector(ElementType type, long inner) => type.SizeOf() switch
    {
        1 => inner % 8 == 0 ? 8 : inner % 4 == 0 ? 4 : inner % 2 == 0 ? 2 : 1,
        2 => inner % 2 == 0 ? 2 : 1,
        _ => 1,
    };

    /// <summary>The statement that sets a reduction's float v from a loaded element: the element itself, or the input's chain over it.</summary>
    private static string Loaded(ReductionInput? input, string element) => input is null
        ? $"const float v = (float){element};"
        : $"float v; {{ const {CType(ComputeType(input.Type))} xe = {element}; {input.Statements.Replace('\n', ' ')} v = (float)({input.Result}); }}";

    /// <summary>Threads to launch <see cref="ReduceColumns"/> with: a block per outer index, split and chunk of 32 lanes.</summary>
    public static long ReduceColumnsThreads(int vector, long outer, long inner, long splits = 1) => outer * splits * (((inner / vector) + 31) / 32) * 32 * ReduceColumnRows;

    /// <summary>
    /// How many ranges <see cref="ReduceColumns"/> splits the reduced axis into: enough blocks to fill the GPU (about
    /// 1,024), each range at least 64 rows long (8 loads a thread).
    /// </summary>
    public static long ReduceColumnSplits(int vector, long outer, long reduced, long inner)
    {
        var blocks = outer * (((inner / vector) + 31) / 32);
        return Math.Max(1, Math.Min((1024 + blocks - 1) / blocks, reduced / 64));
    }

    /// <summary>
    /// Finishes a split <see cref="ReduceColumns"/>: y[o, i] from the float partials ws [splits, outer, inner], a warp per
    /// output (launched as 32 threads a row): lane l combines partials l, l + 32, ... in split order, then the lanes' results
    /// meet in a fixed shuffle tree, so the result is the same run after run. One thread per output walking every partial
    /// (even with eight loads in flight) left each output 16 L2 round trips deep for EfficientNet-B0's squeeze-excite means
    /// at b=4 (128 partials for 384 outputs); measured on the H200 (session 22 calls 1 and 6) those steps went from 0.238
    /// to 0.228 ms for 16 means, so what keeps them at 10-18 us each is elsewhere in the step.
    /// </summary>
    public static KernelCode ReduceSplits(ElementType type, string kind, long splits, long outer, long reduced, long inner)
    {
        var t = CType(type);
        var w = new KernelWriter(KernelWriter.Fits32(splits * outer * inner) && KernelWriter.Fits32((outer * inner * 32) + 32));
        var ix = w.Idx;
        var n = w.Size("n", outer * inner);
        var s = w.Size("splits", splits);
        var rN = w.Size("reduced", reduced);
        var (init, _, combine, result) = ReductionParts(kind, rN);
        w.Body.Append($$"""
                const {{ix}} i = (({{ix}})blockIdx.x * blockDim.x + threadIdx.x) >> 5;
                if (i >= {{n}}) return;
                const int lane = (int)(threadIdx.x & 31);
                float z = {{init}};
                #pragma unroll 4
                for ({{ix}} k = lane; k < {{s}}; k += 32) { const float z2 = ws[k * {{n}} + i]; z = {{combine}}; }
                for (int o = 16; o > 0; o >>= 1) { const float z2 = __shfl_xor_sync(0xffffffffu, z, o); z = {{combine}}; }
                if (lane == 0) y[i] = ({{t}})({{result}});

            """);
        return w.Build($"{t}* __restrict__ y, const float* __restrict__ ws, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Reduces each contiguous row of x [rows, cols] into y [rows]: a warp per row (<paramref name="block"/> 32) or a block
    /// of <paramref name="block"/> threads per row for long rows, partial results combined through shuffles and shared memory.
    /// With <paramref name="input"/> x is the value an elementwise chain makes <paramref name="type"/> from, as
    /// <see cref="ReduceColumns"/> reads it.
    /// </summary>
    public static KernelCode ReduceRows(ElementType type, string kind, int block, long rows, long cols, ReductionInput? input = null)
    {
        if (!CoalescedReduction(kind, type) || block is not (32 or 256))
        {
            throw new ArgumentException($"ReduceRows: {kind} over {type}, block {block}");
        }

        var t = CType(type);
        var w = new KernelWriter(KernelWriter.Fits32(rows * cols + cols));
        var ix = w.Idx;
        var r = w.Size("rows", rows);
        var c = w.Size("cols", cols);
        var (init, step, combine, result) = ReductionParts(kind, c);
        var shuffle = $"for (int o = 16; o > 0; o >>= 1) {{ const float z2 = __shfl_xor_sync(0xffffffffu, z, o); z = {combine}; }}";
        var rowExpr = block == 32 ? $"(({ix})blockIdx.x * blockDim.x + threadIdx.x) >> 5" : $"({ix})blockIdx.x";
        var start = block == 32 ? "threadIdx.x & 31" : "threadIdx.x";
        var body = new StringBuilder();
        body.Append($$"""
                const {{ix}} rw = {{rowExpr}};
                if (rw >= {{r}}) return;
                const {{CType(input?.Type ?? type)}}* xr = x + rw * {{c}};
                float z = {{init}};
                for ({{ix}} j = {{start}}; j < {{c}}; j += {{KernelWriter.Lit(block)}}) { {{Loaded(input, "xr[j]")}} {{step}} }
                {{shuffle}}

            """);
        if (block > 32)
        {
            body.Append($$"""
                    __shared__ float part[32];
                    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = z;
                    __syncthreads();
                    if (threadIdx.x >= 32) return;
                    z = threadIdx.x < {{KernelWriter.Lit(block / 32)}} ? part[threadIdx.x] : {{init}};
                    {{shuffle}}

                """);
        }

        body.Append($$"""
                if ((threadIdx.x & 31) == 0) y[rw] = ({{t}})({{result}});

            """);
        w.Body.Append(body);
        return w.Build($"{t}* __restrict__ y, const {CType(input?.Type ?? type)}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>The source with a <c>KERNEL_NAME_vec</c> struct of <paramref name="vector"/> elements (one aligned load) put before it.</summary>
    private static KernelCode WithVector(KernelCode code, string type, int align, int vector) =>
        code with { Source = $"struct __align__({KernelWriter.Lit(align)}) {Name}_vec {{ {type} v[{KernelWriter.Lit(vector)}]; }};\n" + code.Source };
}

/// <summary>
/// A reduction's input read through the elementwise chain that makes it: x is stored as <paramref name="Type"/>, and
/// <paramref name="Statements"/> over <c>xe</c> (the element as loaded, in its compute type) end in
/// <paramref name="Result"/>, the value reduced.
/// </summary>
/// <param name="Type">How the value the kernel reads is stored (an int8 activation's bytes).</param>
/// <param name="Statements">The chain's statements over xe, one a line.</param>
/// <param name="Result">The name of the chain's result.</param>
internal sealed record ReductionInput(ElementType Type, string Statements, string Result);
