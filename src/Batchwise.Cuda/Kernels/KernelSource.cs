using System.Globalization;
using System.Text;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Generates CUDA C for the plan's kernels. Each generator returns a <see cref="KernelCode"/>: the source of one
/// <c>extern "C" __global__</c> function named <see cref="Name"/>, which depends only on the operator's signature (types,
/// rank, layout, fused expression), and an argument block with every size and stride. A session compiles each distinct
/// source once (cached on disk too) and every plan, whatever its shapes, reuses it.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>The placeholder for the kernel's name in generated source.</summary>
    public const string Name = "KERNEL_NAME";

    /// <summary>Threads per block for one-thread-per-element kernels.</summary>
    public const int BlockSize = 256;

    /// <summary>The kernel that holds a stream until the host opens it (or half a second passes): see <see cref="Prelude"/>.</summary>
    public const string GateKernel = "bw_gate";

    /// <summary>Definitions every plan's program starts with (and <see cref="GateKernel"/>, for profiling).</summary>
    public const string Prelude = PreludeDefinitions + QuantizeHelper;

    /// <summary><see cref="Prelude"/> less <see cref="QuantizeHelper"/>.</summary>
    private const string PreludeDefinitions = """
        typedef long long i64;
        typedef unsigned long long u64;
        struct __align__(2) bw_half {
            unsigned short bits;
            __device__ __forceinline__ bw_half() {}
            __device__ __forceinline__ bw_half(float f) { asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(f)); }
            __device__ __forceinline__ bw_half(double f) : bw_half((float)f) {}
            __device__ __forceinline__ bw_half(int v) : bw_half((float)v) {}
            __device__ __forceinline__ operator float() const { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits)); return f; }
        };
        struct __align__(2) bw_bf16 {
            unsigned short bits;
            __device__ __forceinline__ bw_bf16() {}
            __device__ __forceinline__ bw_bf16(float f) {
                unsigned u = __float_as_uint(f);
                bits = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u) : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
            }
            __device__ __forceinline__ bw_bf16(double f) : bw_bf16((float)f) {}
            __device__ __forceinline__ bw_bf16(int v) : bw_bf16((float)v) {}
            __device__ __forceinline__ operator float() const { return __uint_as_float((unsigned)bits << 16); }
        };
        extern "C" __global__ void bw_gate(volatile int* open)
        {
            unsigned long long start, now;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
            do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (*open == 0 && now - start < 500000000ull);
        }
        // Programmatic dependent launch (sm_90): every generated kernel begins here. Launched with the attribute
        // (BATCHWISE_PDL=on), it waits for the kernel before it on the stream to finish and its writes to be visible, then
        // lets the kernel after it be scheduled (that one waits here in turn); launched without, both are no-ops.
        __device__ __forceinline__ void bw_pdl_enter()
        {
        #if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            asm volatile("griddepcontrol.wait;" ::: "memory");
            asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
        #endif
        }
        """ + MathHelpers;

    /// <summary>
    /// The prelude's arithmetic and warp helpers (<c>__device__ __forceinline__</c>, which the CPU kernel emulator of the
    /// tests defines as <c>inline</c> and compiles from this same text).
    /// </summary>
    internal const string MathHelpers = """

        struct bw_div { unsigned d, m, s; };
        __device__ __forceinline__ unsigned bw_q(const bw_div v, unsigned n) { return (__umulhi(n, v.m) + n) >> v.s; }
        __device__ __forceinline__ float bw_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
        __device__ __forceinline__ double bw_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
        __device__ __forceinline__ float bw_softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }
        __device__ __forceinline__ float bw_gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
        __device__ __forceinline__ float bw_gelu_tanh(float x) { return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
        __device__ __forceinline__ float bw_warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
        __device__ __forceinline__ float bw_warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
        __device__ __forceinline__ float bw_block_sum(float v, float* shared) {
            v = bw_warp_sum(v);
            __syncthreads();
            if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
            __syncthreads();
            v = (int)(threadIdx.x & 31) < (int)(blockDim.x >> 5) ? shared[threadIdx.x & 31] : 0.f;
            return bw_warp_sum(v);
        }

        """;

    /// <summary>The C type of an element type.</summary>
    public static string CType(ElementType t) => t switch
    {
        ElementType.Float => "float",
        ElementType.Double => "double",
        ElementType.Int64 => "long long",
        ElementType.Int32 => "int",
        ElementType.Int16 => "short",
        ElementType.Int8 => "signed char",
        ElementType.UInt8 => "unsigned char",
        ElementType.UInt16 => "unsigned short",
        ElementType.UInt32 => "unsigned int",
        ElementType.UInt64 => "unsigned long long",
        ElementType.Bool => "bool",
        ElementType.Float16 => "bw_half",
        ElementType.BFloat16 => "bw_bf16",
        _ => throw new BatchwiseException($"Tensors of {t.ShortName()} are not supported by the cuda engine yet", "Use float32 (fp16 comes with --precision fp16)."),
    };

    /// <summary>The type values are computed in: float for half precision (loads convert), the storage type otherwise.</summary>
    public static ElementType ComputeType(ElementType t) => t is ElementType.Float16 or ElementType.BFloat16 ? ElementType.Float : t;

    /// <summary>An unsigned type of the same size, for kernels that only move elements.</summary>
    public static string MoveType(int elementSize) => elementSize switch
    {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        16 => "uint4",
        _ => throw new ArgumentOutOfRangeException(nameof(elementSize)),
    };

    /// <summary>A float literal C accepts.</summary>
    public static string F(double v, ElementType t = ElementType.Float)
    {
        if (double.IsPositiveInfinity(v))
        {
            return t == ElementType.Double ? "(1.0/0.0)" : "(1.f/0.f)";
        }

        if (double.IsNegativeInfinity(v))
        {
            return t == ElementType.Double ? "(-1.0/0.0)" : "(-1.f/0.f)";
        }

        if (double.IsNaN(v))
        {
            return t == ElementType.Double ? "(0.0/0.0)" : "(0.f/0.f)";
        }

        var s = v.ToString("R", CultureInfo.InvariantCulture);
        if (!s.Contains('.', StringComparison.Ordinal) && !s.Contains('E', StringComparison.Ordinal))
        {
            s += ".0";
        }

        return t == ElementType.Double ? s : s + "f";
    }

    /// <summary>Row-major strides of a shape.</summary>
    public static long[] Strides(IReadOnlyList<long> shape)
    {
        var s = new long[shape.Count];
        long acc = 1;
        for (var i = shape.Count - 1; i >= 0; i--)
        {
            s[i] = acc;
            acc *= shape[i];
        }

        return s;
    }

    private static long Count(IReadOnlyList<long> shape) => shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>
    /// An elementwise kernel with numpy broadcasting: output of <paramref name="outShape"/>, inputs already right-aligned to
    /// its rank (size-1 dimensions broadcast). <paramref name="expression"/> uses x0, x1, ... for the inputs' values.
    /// </summary>
    /// <remarks>
    /// <para><paramref name="statements"/> (fused chains) run before the expression and may define what it uses.</para>
    /// <para>
    /// The dimensions are first merged where every input broadcasts alike (an NHWC bias over [N, H, W, C] becomes
    /// [NHW, C] with the bias read at the column), so one division finds a channel. Each input is read as a scalar,
    /// in full (index i), or through strides passed as arguments.
    /// </para>
    /// <para>
    /// With <paramref name="outBlock"/> &gt; 0 the output is a slice of a larger tensor (a Concat's part written in place):
    /// element i goes to (i / block) * rowStride + offset + i % block.
    /// </para>
    /// </remarks>
    public static KernelCode Elementwise(ElementType outType, IReadOnlyList<ElementType> inTypes, long[] outShape, IReadOnlyList<long[]> inShapes, string expression, string? statements = null, int vector = 1, long outBlock = 0, long outRowStride = 0, long outOffset = 0)
    {
        if (inShapes.Any(s => s.Length != outShape.Length))
        {
            throw new ArgumentException("input shapes must be right-aligned to the output rank");
        }

        var n = Count(outShape);
        var (dims, strides, kinds) = BroadcastLayout(outShape, inShapes);
        var limit = Math.Max(n, outBlock > 0 ? ((n / outBlock) * outRowStride) + outOffset + outBlock : 0);
        var w = new KernelWriter(KernelWriter.Fits32(limit) && inShapes.All(s => KernelWriter.Fits32(Count(s))));
        var ix = w.Idx;
        var b = w.Body;
        var count = w.Size("n", n);
        var rank = dims.Length;
        var needCoords = kinds.Contains(InputKind.Strided);
        var divs = needCoords ? dims.Select((d, k) => k == 0 ? string.Empty : w.Div("d" + k, d)).ToArray() : [];
        var inner = rank - 1;
        var strideArgs = new string?[inShapes.Count][];
        for (var k = 0; k < inShapes.Count; k++)
        {
            strideArgs[k] = new string?[rank];
            if (kinds[k] == InputKind.Strided)
            {
                for (var d = 0; d < rank; d++)
                {
                    // Whether an input varies along a dimension is part of the signature; along the innermost one its
                    // stride is then 1 (row-major), elsewhere an argument.
                    strideArgs[k][d] = strides[k][d] == 0 ? null : d == inner ? "1" : w.Size($"s{k}_{d}", strides[k][d]);
                }
            }
        }

        string? block = null, rowStride = null, offset = null;
        if (outBlock > 0)
        {
            block = w.Div("block", outBlock);
            rowStride = w.Size("row_stride", outRowStride);
            offset = w.Size("offset", outOffset);
        }

        string Slot(string e) => block is null ? e : $"({w.Quot(block, e)} * {rowStride} + {offset} + (({e}) - {w.Quot(block, e)} * {w.DivValue(block)}))";

        // The index of input k at the coordinates c0..c{rank-1} (decomposed from `first`/`i` once).
        string StridedIndex(int k) => string.Join(" + ", Enumerable.Range(0, rank).Where(d => strideArgs[k][d] is not null).Select(d => strideArgs[k][d] == "1" ? $"c{d}" : $"c{d} * {strideArgs[k][d]}").DefaultIfEmpty("0"));

        void Decompose(string from)
        {
            b.Append("    ").Append(ix).Append(" r_ = ").Append(from).Append(";\n");
            for (var d = rank - 1; d >= 1; d--)
            {
                b.Append("    ").Append(w.Peel(divs[d], "r_", "c" + d)).Append('\n');
            }

            b.Append("    const ").Append(ix).Append(" c0 = r_;\n");
        }

        var sig = new StringBuilder().Append(CType(outType)).Append("* __restrict__ y");
        for (var i = 0; i < inTypes.Count; i++)
        {
            sig.Append(", const ").Append(CType(inTypes[i])).Append("* __restrict__ p").Append(i);
        }

        sig.Append(", ").Append(KernelWriter.ArgsParameter);
        var indent = "    ";
        if (vector > 1)
        {
            // Each thread: `vector` consecutive elements of one row (the innermost dimension divides by it); full inputs
            // and the output move them in one access each (16 bytes for the widest type, 8 or 4 for narrower ones);
            // strided inputs read one value per element, or one for all where they do not vary along the row.
            b.Append("    const ").Append(ix).Append(" first = ((").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x) * ").Append(vector).Append(";\n");
            b.Append("    if (first >= ").Append(count).Append(") return;\n");
            if (needCoords)
            {
                Decompose("first");
            }

            for (var k = 0; k < inShapes.Count; k++)
            {
                switch (kinds[k])
                {
                    case InputKind.Full:
                        var load = VectorOf(vector * inTypes[k].SizeOf());
                        b.Append("    const ").Append(load).Append(" v").Append(k).Append(" = *(const ").Append(load).Append("*)(p").Append(k).Append(" + first); const ").Append(CType(inTypes[k])).Append("* a").Append(k).Append(" = (const ").Append(CType(inTypes[k])).Append("*)&v").Append(k).Append(";\n");
                        break;
                    case InputKind.Strided:
                        b.Append("    const ").Append(ix).Append(" base").Append(k).Append(" = ").Append(StridedIndex(k)).Append(";\n");
                        break;
                }
            }

            b.Append("    ").Append(VectorOf(vector * outType.SizeOf())).Append(" out; ").Append(CType(outType)).Append("* o = (").Append(CType(outType)).Append("*)&out;\n");
            b.Append("    #pragma unroll\n    for (int j = 0; j < ").Append(vector).Append("; j++) {\n");
            indent = "        ";
        }
        else
        {
            b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
            b.Append("    if (i >= ").Append(count).Append(") return;\n");
            if (needCoords)
            {
                Decompose("i");
            }
        }

        for (var k = 0; k < inShapes.Count; k++)
        {
            var load = kinds[k] switch
            {
                InputKind.Scalar => $"p{k}[0]",
                InputKind.Full => vector > 1 ? $"a{k}[j]" : $"p{k}[i]",
                _ => vector > 1 ? (strides[k][inner] == 0 ? $"p{k}[base{k}]" : $"p{k}[base{k} + j]") : $"p{k}[{StridedIndex(k)}]",
            };
            b.Append(indent).Append("const ").Append(CType(ComputeType(inTypes[k]))).Append(" x").Append(k).Append(" = ").Append(load).Append(";\n");
        }

        AppendStatements(b, statements, indent);

        var store = vector > 1 ? "o[j]" : $"y[{Slot("i")}]";
        b.Append(indent).Append(store).Append(" = (").Append(CType(outType)).Append(outType is ElementType.Float16 or ElementType.BFloat16 ? ")(float)(" : ")(").Append(expression).Append(");\n");
        if (vector > 1)
        {
            b.Append("    }\n    *(").Append(VectorOf(vector * outType.SizeOf())).Append("*)(y + ").Append(Slot("first")).Append(") = out;\n");
        }

        return w.Build(sig.ToString());
    }

    /// <summary>How an input of an elementwise kernel is read.</summary>
    private enum InputKind
    {
        /// <summary>One value for every element.</summary>
        Scalar,

        /// <summary>The output's own shape: element i.</summary>
        Full,

        /// <summary>Broadcast along some dimensions: through strides.</summary>
        Strided,
    }

    /// <summary>
    /// The output's dimensions merged where every input broadcasts alike (size-1 output dimensions dropped), each input's
    /// strides over them (0 where it broadcasts), and how each input is read.
    /// </summary>
    private static (long[] Dims, long[][] Strides, InputKind[] Kinds) BroadcastLayout(long[] outShape, IReadOnlyList<long[]> inShapes)
    {
        var dims = new List<long>();
        var pattern = new List<bool[]>(); // per merged dimension: does input k vary along it
        for (var d = 0; d < outShape.Length; d++)
        {
            if (outShape[d] == 1)
            {
                continue;
            }

            var varies = inShapes.Select(s => s[d] != 1).ToArray();
            if (dims.Count > 0 && pattern[^1].SequenceEqual(varies))
            {
                dims[^1] *= outShape[d];
                continue;
            }

            dims.Add(outShape[d]);
            pattern.Add(varies);
        }

        if (dims.Count == 0)
        {
            dims.Add(1);
            pattern.Add(inShapes.Select(_ => false).ToArray());
        }

        var strides = new long[inShapes.Count][];
        var kinds = new InputKind[inShapes.Count];
        for (var k = 0; k < inShapes.Count; k++)
        {
            var s = new long[dims.Count];
            long acc = 1;
            for (var d = dims.Count - 1; d >= 0; d--)
            {
                s[d] = pattern[d][k] ? acc : 0;
                acc *= pattern[d][k] ? dims[d] : 1;
            }

            strides[k] = s;
            kinds[k] = pattern.All(p => !p[k]) ? InputKind.Scalar : pattern.All(p => p[k]) ? InputKind.Full : InputKind.Strided;
        }

        return ([.. dims], strides, kinds);
    }

    /// <summary>
    /// y = f(y) over <paramref name="count"/> contiguous floating-point elements, in place (an activation right behind the
    /// matrix product that wrote y: ViT's erf GELU after fc1). <paramref name="expression"/> reads x0 in the compute type
    /// (float for half precision). Each thread takes 16 bytes (8 half or 4 float values) where the count divides, else one
    /// element; launch with <see cref="UnaryInPlaceThreads"/> threads. With <paramref name="offset"/> the elements start
    /// that far into y (a row chunk of a product's result).
    /// </summary>
    /// <remarks>
    /// Blocks walk the tensor back to front (unless <paramref name="backToFront"/> is false): the product wrote it front to
    /// back, so its last part is the likeliest still in L2 (fc1's output at ViT-S b=64 is 38.7 MB, the H200's L2 50 MB)
    /// and is read first, and the part this kernel writes last, the front, is what the next product reads first. In
    /// place, the tensor's footprint stays one buffer.
    /// </remarks>
    public static KernelCode UnaryInPlace(ElementType type, string expression, long count, bool backToFront = true, long offset = 0)
    {
        if (!type.IsFloatingPoint())
        {
            throw new ArgumentException("an in-place activation needs a floating-point tensor", nameof(type));
        }

        var vector = UnaryInPlaceVector(type, count);
        var w = new KernelWriter(KernelWriter.Fits32(count));
        var ix = w.Idx;
        var n = w.Size("n", count / vector);
        var (t, c) = (CType(type), CType(ComputeType(type)));
        var store = type is ElementType.Float16 or ElementType.BFloat16 ? $"({t})(float)({expression})" : $"({t})({expression})";
        var b = w.Body;
        if (offset != 0)
        {
            // A part of the tensor (a row chunk's), starting this many elements in: 16-byte aligned where vectors are read.
            b.Append("    y += ").Append(w.I64("offset", offset)).Append(";\n");
        }

        b.Append("    const ").Append(ix).Append(" v = (").Append(ix).Append(backToFront ? ")(gridDim.x - 1 - blockIdx.x)" : ")blockIdx.x").Append(" * blockDim.x + threadIdx.x;\n");
        b.Append("    if (v >= ").Append(n).Append(") return;\n");
        if (vector > 1)
        {
            b.Append("    uint4 r = *(const uint4*)(y + v * ").Append(KernelWriter.Lit(vector)).Append("); ").Append(t).Append("* e = (").Append(t).Append("*)&r;\n");
            b.Append("    #pragma unroll\n    for (int j = 0; j < ").Append(KernelWriter.Lit(vector)).Append("; j++) { const ").Append(c).Append(" x0 = e[j]; e[j] = ").Append(store).Append("; }\n");
            b.Append("    *(uint4*)(y + v * ").Append(KernelWriter.Lit(vector)).Append(") = r;\n");
        }
        else
        {
            b.Append("    const ").Append(c).Append(" x0 = y[v];\n");
            b.Append("    y[v] = ").Append(store).Append(";\n");
        }

        return w.Build($"{t}* __restrict__ y, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Threads a <see cref="UnaryInPlace"/> launch over <paramref name="count"/> elements needs.</summary>
    public static long UnaryInPlaceThreads(ElementType type, long count) => count / UnaryInPlaceVector(type, count);

    private static int UnaryInPlaceVector(ElementType type, long count) =>
        type.SizeOf() is 2 or 4 && count % (16 / type.SizeOf()) == 0 ? 16 / type.SizeOf() : 1;

    /// <summary>
    /// How many elements one thread of <see cref="Elementwise"/> can take: as many as make 16 bytes of the widest of the
    /// output and the full-shape inputs (8 where half values meet int8 ones: 16 bytes of half read, 8 of int8 written),
    /// when the output is a half or float value or an 8-bit integer, no full-shape input is wider than 4 bytes, and the
    /// innermost merged dimension divides; otherwise 1.
    /// </summary>
    public static int ElementwiseVector(ElementType outType, IReadOnlyList<ElementType> inTypes, long[] outShape, IReadOnlyList<long[]> inShapes)
    {
        var size = outType.SizeOf();
        if (!((size is 2 or 4 && outType.IsFloatingPoint()) || outType is ElementType.UInt8 or ElementType.Int8))
        {
            return 1;
        }

        var n = Count(outShape);
        var (dims, _, kinds) = BroadcastLayout(outShape, inShapes);
        var widest = Enumerable.Range(0, inShapes.Count).Where(i => kinds[i] == InputKind.Full).Select(i => inTypes[i].SizeOf()).Append(size).Max();
        if (widest > 4)
        {
            return 1;
        }

        var k = 16 / widest;
        return n % k == 0 && n >= k && dims[^1] % k == 0 ? k : 1;
    }

    /// <summary>A fused chain's statements (one a line), each on its own line at <paramref name="indent"/>; nothing for null.</summary>
    private static void AppendStatements(StringBuilder b, string? statements, string indent)
    {
        foreach (var line in statements?.Split('\n', StringSplitOptions.RemoveEmptyEntries) ?? [])
        {
            b.Append(indent).Append(line.Trim()).Append('\n');
        }
    }

    /// <summary>The C type that moves <paramref name="bytes"/> (4, 8 or 16) in one access.</summary>
    private static string VectorOf(int bytes) => bytes switch { 16 => "uint4", 8 => "uint2", 4 => "unsigned int", _ => throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "4, 8 or 16 bytes") };

    /// <summary>
    /// Copies a strided view into another: for every coordinate c of <paramref name="shape"/>,
    /// dst[dstBase + sum c*dstStrides] = src[srcBase + sum c*srcStrides]. Transpose, Slice, Expand, Concat, Split use it.
    /// </summary>
    /// <remarks>
    /// Where the innermost dimension is contiguous on both sides and every offset allows it, each thread moves 16, 8 or 4
    /// bytes at once (a channels-last Concat copies runs of a few dozen half values: 8 at a time, not 1).
    /// </remarks>
    public static KernelCode ViewCopy(int elementSize, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase)
    {
        var (vs, ss, sb, ds, db, type) = Widen(elementSize, shape, srcStrides, srcBase, dstStrides, dstBase);
        return ViewCopy(type, type, vs, ss, sb, ds, db);
    }

    /// <summary>The copy's elements grouped 16, 8 or 4 bytes at a time where the layout allows, and the C type moved.</summary>
    private static (long[] Shape, long[] Src, long SrcBase, long[] Dst, long DstBase, string Type) Widen(int elementSize, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase)
    {
        (shape, srcStrides, dstStrides) = Collapse(shape, srcStrides, dstStrides);
        var n = shape.Length;
        foreach (var width in new[] { 16, 8, 4 })
        {
            if (width <= elementSize || width % elementSize != 0)
            {
                continue;
            }

            var k = width / elementSize;
            var fits = srcStrides[^1] == 1 && dstStrides[^1] == 1 && shape[^1] % k == 0 && srcBase % k == 0 && dstBase % k == 0
                && srcStrides.Take(n - 1).All(v => v % k == 0) && dstStrides.Take(n - 1).All(v => v % k == 0);
            if (fits)
            {
                var vs = shape.ToArray();
                vs[^1] /= k;
                var ss = srcStrides.Select((v, d) => d == n - 1 ? 1 : v / k).ToArray();
                var ds = dstStrides.Select((v, d) => d == n - 1 ? 1 : v / k).ToArray();
                return (vs, ss, srcBase / k, ds, dstBase / k, VectorOf(width));
            }
        }

        return (shape, srcStrides, srcBase, dstStrides, dstBase, MoveType(elementSize));
    }

    /// <summary>Threads a <see cref="ViewCopy(int, long[], long[], long, long[], long)"/> launch needs (one per element moved).</summary>
    public static long ViewCopyThreads(int elementSize, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase) =>
        Count(Widen(elementSize, shape, srcStrides, srcBase, dstStrides, dstBase).Shape);

    /// <summary>
    /// Batched transpose [B, R, C] to [B, C, R] through 32x32 shared-memory tiles (both sides coalesced): channels-last to
    /// NCHW and back. Launch with <see cref="TransposeThreads"/> threads.
    /// </summary>
    public static KernelCode Transpose(int elementSize, long batch, long rows, long cols)
    {
        var t = MoveType(elementSize);
        var w = new KernelWriter(small: false);
        var tilesR = (rows + 31) / 32;
        var tilesC = (cols + 31) / 32;
        var perBatch = w.I64("tiles", tilesR * tilesC);
        var tc = w.I64("tiles_c", tilesC);
        var r = w.I64("rows", rows);
        var c = w.I64("cols", cols);
        w.Body.Append($$"""
                __shared__ {{t}} tile[32][33];
                i64 tileIndex = blockIdx.x;
                i64 b = tileIndex / {{perBatch}};
                i64 rem = tileIndex - b * {{perBatch}};
                i64 tr = rem / {{tc}};
                i64 r0 = tr * 32, c0 = (rem - tr * {{tc}}) * 32;
                int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
                const {{t}}* s = src + b * {{r}} * {{c}};
                {{t}}* d = dst + b * {{r}} * {{c}};
                for (int k = ty; k < 32; k += 8) { i64 rr = r0 + k, cc = c0 + tx; if (rr < {{r}} && cc < {{c}}) tile[k][tx] = s[rr * {{c}} + cc]; }
                __syncthreads();
                for (int k = ty; k < 32; k += 8) { i64 cc = c0 + k, rr = r0 + tx; if (rr < {{r}} && cc < {{c}}) d[cc * {{r}} + rr] = tile[tx][k]; }

            """);
        return w.Build($"{t}* __restrict__ dst, const {t}* __restrict__ src, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Where a strided copy (as <see cref="ViewCopy(int, long[], long[], long, long[], long)"/> takes it, from offset 0 to
    /// offset 0) is a batched transpose of a row-major [B, R, C] into a row-major [B, C, R] once contiguous dimensions are
    /// merged (a float32 plan's Transpose(0, 2, 3, 1) of an NCHW activation, ConvNeXt's permutes around its LayerNorms,
    /// and back): B, R and C, for <see cref="Transpose"/>, whose 32 x 32 tiles read and write whole lines where the
    /// element-per-thread copy reads one element of each line it touches. Null otherwise, or where a side is shorter
    /// than <paramref name="minSide"/> (the tiles would be mostly empty).
    /// </summary>
    public static (long Batch, long Rows, long Cols)? BatchedTranspose(long[] shape, long[] srcStrides, long[] dstStrides, long minSide = 8)
    {
        var (s, a, d) = Collapse(shape, srcStrides, dstStrides);
        var (batch, x, y, sa, da) = s.Length switch
        {
            2 => (1L, s[0], s[1], a, d),
            3 when a[0] == s[1] * s[2] && d[0] == s[1] * s[2] => (s[0], s[1], s[2], a[1..], d[1..]),
            _ => (0L, 0L, 0L, a, d),
        };

        // dst [x, y] row-major (strides y, 1) from src [y, x] row-major (strides 1, x): rows y, columns x of the source.
        return batch > 0 && da[0] == y && da[1] == 1 && sa[0] == 1 && sa[1] == x && Math.Min(x, y) >= minSide ? (batch, y, x) : null;
    }

    /// <summary>Threads to launch <see cref="Transpose"/> with (one block of 256 per 32x32 tile).</summary>
    public static long TransposeThreads(long batch, long rows, long cols) => batch * ((rows + 31) / 32) * ((cols + 31) / 32) * BlockSize;

    /// <summary>
    /// A QuantizeLinear and DequantizeLinear pair applied to a value on the way: saturate(round_half_even(v / Scale) + Zero)
    /// to [Low, High], then (q - Zero) * Scale.
    /// </summary>
    public readonly record struct QuantRounding(float Scale, double Zero, int Low, int High)
    {
        /// <summary>The pair applied to the float expression <paramref name="v"/>, as the QuantizeLinear lowering rounds.</summary>
        public string Apply(string v) => $"(({Quantize(v)} - {F(Zero)}) * {F(Scale)})";

        /// <summary>The QuantizeLinear alone: the quantized value of the float expression <paramref name="v"/>, as a float.</summary>
        public string Quantize(string v) => $"fminf(fmaxf(rintf(({v}) / {F(Scale)}) + {F(Zero)}, {F(Low)}), {F(High)})";

        /// <summary>
        /// <see cref="Quantize"/> with the division as a product by the reciprocal and one correction (<see cref="QuotientHelper"/>:
        /// the correctly rounded quotient for the normal operands a QuantizeLinear meets), for kernels that round in their
        /// inner loop, where the division's full-range sequence costs (the fused stem: twice the kernel's time). The
        /// quotient is clamped to the saturation less the zero point before it is rounded (the same: the bounds are
        /// integers) and rounded to even by adding and taking away 1.5 * 2^23 (bw_rint: two float adds, where rintf
        /// takes the conversion unit, 16 a clock an SM on Hopper).
        /// </summary>
        public string QuantizeByReciprocal(string v) => $"(bw_rint({ClampedQuotient(v)}) + {F(Zero)})";

        /// <summary>
        /// <see cref="Apply"/> through <see cref="QuantizeByReciprocal"/>: the rounded quotient times the scale, the same value
        /// as adding the zero point and taking it away again (integers far below 2^24), two adds fewer a value.
        /// </summary>
        public string ApplyByReciprocal(string v) => $"(bw_rint({ClampedQuotient(v)}) * {F(Scale)})";

        /// <summary>
        /// The stored byte of <see cref="QuantizeByReciprocal"/> less <paramref name="shift"/> as the low byte of an unsigned
        /// expression: the clamped quotient plus 1.5 * 2^23 (its bits then hold the rounded value in the low bits, as
        /// bw_rint rounds) plus the zero point less the shift as an integer, where rounding, adding the zero point,
        /// taking the shift away and adding 1.5 * 2^23 again for the bits took four float adds.
        /// </summary>
        public string StoredBits(string v, int shift) => $"(__float_as_uint({ClampedQuotient(v)} + 12582912.f) + (unsigned)({checked((int)Zero - shift)}))";

        /// <summary>The quotient by the reciprocal clamped to the saturation less the zero point (integers: clamping before rounding is the same).</summary>
        private string ClampedQuotient(string v) => $"fminf(fmaxf(bw_qdiv({v}, {F(Scale)}, {F(1f / Scale)}), {F(Low - Zero)}), {F(High - Zero)})";
    }

    /// <summary>bw_qdiv(x, s, 1/s): x / s from the reciprocal, q = x·(1/s) corrected once by the remainder fma(-q, s, x) (Markstein); bw_rint(x): rintf for |x| &lt;= 2^22 in two float adds.</summary>
    public const string QuotientHelper = """
        #ifndef BW_QDIV
        #define BW_QDIV
        __device__ __forceinline__ float bw_qdiv(float x, float s, float inv) { const float q = x * inv; return fmaf(fmaf(-q, s, x), inv, q); }
        // Round half to even for |x| <= 2^22 (a clamped quantized value): the sum's last place is the units.
        __device__ __forceinline__ float bw_rint(float x) { return (x + 12582912.f) - 12582912.f; }
        #endif

        """;

    /// <summary>
    /// bw_quantize(x, s, 1/s, lo, hi): QuantizeLinear's rintf(x / s) clamped to [lo, hi] (the saturation less the zero
    /// point), the quotient by <see cref="QuotientHelper"/>'s bw_qdiv (an infinite one as it is: the correction would make
    /// it NaN) and rounded by its bw_rint; in <see cref="Prelude"/> for elementwise chains, and the CPU emulator's.
    /// </summary>
    public const string QuantizeHelper = QuotientHelper + """
        __device__ __forceinline__ float bw_quantize(float x, float s, float inv, float lo, float hi) {
            const float q = x * inv;
            return bw_rint(fminf(fmaxf(fabsf(q) <= 3.402823466e38f ? bw_qdiv(x, s, inv) : q, lo), hi));
        }

        """;

    /// <summary>
    /// An [N, C, H, W] tensor to channels-last [N, H, W, <paramref name="paddedChannels"/>] with zeros in the added
    /// channels, converting the element type on the way (a network's float32 image to float16 for its first convolution),
    /// each value quantized and dequantized first where <paramref name="rounding"/> is given.
    /// </summary>
    public static KernelCode ChannelsLastPadded(ElementType from, ElementType to, long n, long channels, long pixels, long paddedChannels, QuantRounding? rounding = null)
    {
        // One thread per pixel: its few channels read from their planes (neighbouring threads, neighbouring pixels), the
        // padded pixel written at once (16 bytes for 8 half values) where the size allows.
        var bytes = paddedChannels * to.SizeOf();
        var vector = bytes is 16 or 8 or 4 ? VectorOf((int)bytes) : null;
        var w = new KernelWriter(KernelWriter.Fits32(n * pixels * paddedChannels) && KernelWriter.Fits32(n * pixels * channels));
        var ix = w.Idx;
        var count = w.Size("n", n * pixels);
        var px = w.Div("pixels", pixels);
        var ch = w.Size("channels", channels);
        var b = w.Body;
        b.Append("    const ").Append(ix).Append(" p = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (p >= ").Append(count).Append(") return;\n");
        b.Append("    const ").Append(ix).Append(" bq = ").Append(w.Quot(px, "p")).Append(", q = p - bq * ").Append(w.DivValue(px)).Append(";\n");
        b.Append("    const ").Append(CType(from)).Append("* s = src + bq * ").Append(ch).Append(" * ").Append(w.DivValue(px)).Append(" + q;\n");
        var pc = KernelWriter.Lit(paddedChannels);
        var read = $"(float)s[c * {w.DivValue(px)}]";
        var value = rounding is { } r ? $"({r.Apply(read)})" : read;
        if (vector is not null)
        {
            b.Append("    ").Append(vector).Append(" packed; ").Append(CType(to)).Append("* v = (").Append(CType(to)).Append("*)&packed;\n");
            b.Append("    #pragma unroll\n    for (int c = 0; c < ").Append(pc).Append("; c++) v[c] = c < (int)").Append(ch).Append(" ? (").Append(CType(to)).Append(")").Append(value).Append(" : (").Append(CType(to)).Append(")0.f;\n");
            b.Append("    *(").Append(vector).Append("*)(dst + p * ").Append(pc).Append(") = packed;\n");
        }
        else
        {
            b.Append("    for (int c = 0; c < ").Append(pc).Append("; c++) dst[p * ").Append(pc).Append(" + c] = c < (int)").Append(ch).Append(" ? (").Append(CType(to)).Append(")").Append(value).Append(" : (").Append(CType(to)).Append(")0.f;\n");
        }

        return w.Build($"{CType(to)}* __restrict__ dst, const {CType(from)}* __restrict__ src, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Threads to launch <see cref="ChannelsLastPadded"/> with: one per pixel.</summary>
    public static long ChannelsLastPaddedThreads(long n, long pixels) => n * pixels;

    /// <summary>
    /// A strided copy that also converts the element type (e.g. float32 NCHW to float16 NHWC at a plan's input and back at
    /// its outputs); values go through float.
    /// </summary>
    public static KernelCode ConvertCopy(ElementType from, ElementType to, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase) =>
        from == to
            ? ViewCopy(from.SizeOf(), shape, srcStrides, srcBase, dstStrides, dstBase)
            : ViewCopy(CType(from), CType(to), shape, srcStrides, srcBase, dstStrides, dstBase);

    /// <summary>Threads a <see cref="ConvertCopy"/> launch needs.</summary>
    public static long ConvertCopyThreads(ElementType from, ElementType to, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase) =>
        from == to ? ViewCopyThreads(from.SizeOf(), shape, srcStrides, srcBase, dstStrides, dstBase) : Count(shape);

    private static KernelCode ViewCopy(string srcType, string dstType, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase)
    {
        (shape, srcStrides, dstStrides) = Collapse(shape, srcStrides, dstStrides);

        // 32-bit index arithmetic when every offset is non-negative and fits (negative-step slices stay 64-bit).
        var srcMax = srcBase + shape.Select((d, k) => (d - 1) * srcStrides[k]).Sum();
        var dstMax = dstBase + shape.Select((d, k) => (d - 1) * dstStrides[k]).Sum();
        var small = srcBase >= 0 && dstBase >= 0 && srcStrides.All(x => x >= 0) && dstStrides.All(x => x >= 0) && KernelWriter.Fits32(srcMax) && KernelWriter.Fits32(dstMax) && KernelWriter.Fits32(Count(shape));
        var w = new KernelWriter(small);
        var ix = w.Idx;
        var b = w.Body;
        var count = w.Size("n", Count(shape));
        var sBase = small ? w.Size("src_base", srcBase) : w.I64("src_base", srcBase);
        var dBase = small ? w.Size("dst_base", dstBase) : w.I64("dst_base", dstBase);
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(count).Append(") return;\n");
        b.Append("    ").Append(ix).Append(" r_ = i; ").Append(ix).Append(" s = ").Append(sBase).Append("; ").Append(ix).Append(" d = ").Append(dBase).Append(";\n");
        for (var k = shape.Length - 1; k >= 0; k--)
        {
            var ss = small ? w.Size("ss" + k, srcStrides[k]) : w.I64("ss" + k, srcStrides[k]);
            var dd = small ? w.Size("ds" + k, dstStrides[k]) : w.I64("ds" + k, dstStrides[k]);
            if (k == 0)
            {
                b.Append("    s += r_ * ").Append(ss).Append("; d += r_ * ").Append(dd).Append(";\n");
            }
            else
            {
                b.Append("    { ").Append(w.Peel(w.Div("dim" + k, shape[k]), "r_", "c")).Append(" s += c * ").Append(ss).Append("; d += c * ").Append(dd).Append("; }\n");
            }
        }

        b.Append(srcType == dstType ? "    dst[d] = src[s];\n" : $"    dst[d] = ({dstType})(float)src[s];\n");
        return w.Build($"{dstType}* __restrict__ dst, const {srcType}* __restrict__ src, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Merges adjacent dimensions that are contiguous in both views (fewer divisions per element).</summary>
    public static (long[] Shape, long[] Src, long[] Dst) Collapse(long[] shape, long[] src, long[] dst)
    {
        var s = new List<long>();
        var a = new List<long>();
        var b = new List<long>();
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 1)
            {
                continue;
            }

            if (s.Count > 0 && a[^1] == src[i] * shape[i] && b[^1] == dst[i] * shape[i])
            {
                s[^1] *= shape[i];
                a[^1] = src[i];
                b[^1] = dst[i];
                continue;
            }

            s.Add(shape[i]);
            a.Add(src[i]);
            b.Add(dst[i]);
        }

        if (s.Count == 0)
        {
            return ([1], [0], [0]);
        }

        return (s.ToArray(), a.ToArray(), b.ToArray());
    }

    /// <summary>Gather along an axis: data viewed as [outer, axisSize, inner], indices flattened; negative indices wrap.</summary>
    public static KernelCode Gather(int elementSize, ElementType indexType, long outer, long axisSize, long inner, long indexCount)
    {
        var t = MoveType(elementSize);
        var w = new KernelWriter(small: false);
        var n = w.I64("n", outer * indexCount * inner);
        var inn = w.I64("inner", inner);
        var cnt = w.I64("count", indexCount);
        var axis = w.I64("axis", axisSize);
        w.Body.Append($$"""
                i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
                if (i >= {{n}}) return;
                i64 in_ = i % {{inn}};
                i64 rest = i / {{inn}};
                i64 j = rest % {{cnt}};
                i64 o = rest / {{cnt}};
                i64 k = (i64)idx[j];
                if (k < 0) k += {{axis}};
                if (k < 0 || k >= {{axis}}) { const {{t}} zero = {}; y[i] = zero; return; }
                y[i] = data[(o * {{axis}} + k) * {{inn}} + in_];

            """);
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ data, const {CType(indexType)}* __restrict__ idx, {KernelWriter.ArgsParameter}");
    }

    /// <summary>A reduction over some axes (one thread per output): kind is mean, sum, max, min, prod, l1, l2, sumsquare, logsum or logsumexp.</summary>
    public static KernelCode Reduce(ElementType type, string kind, long[] inShape, bool[] reduced)
    {
        var strides = Strides(inShape);
        var kept = Enumerable.Range(0, inShape.Length).Where(d => !reduced[d]).ToArray();
        var red = Enumerable.Range(0, inShape.Length).Where(d => reduced[d]).ToArray();
        var outCount = kept.Aggregate(1L, (a, d) => a * inShape[d]);
        var redCount = red.Aggregate(1L, (a, d) => a * inShape[d]);
        var ct = CType(type);
        var acc = type == ElementType.Double ? "double" : type.IsFloatingPoint() ? "float" : ct;
        var w = new KernelWriter(KernelWriter.Fits32(Count(inShape)));
        var ix = w.Idx;
        var b = w.Body;
        var outN = w.Size("n", outCount);
        var redN = w.Size("reduced", redCount);
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(outN).Append(") return;\n");
        b.Append("    ").Append(ix).Append(" r_ = i; ").Append(ix).Append(" base = 0;\n");
        foreach (var d in kept.Reverse())
        {
            var div = w.Div("k" + d, inShape[d]);
            var st = w.Size("ks" + d, strides[d]);
            b.Append("    { ").Append(w.Peel(div, "r_", "c")).Append(" base += c * ").Append(st).Append("; }\n");
        }

        var init = kind switch
        {
            "max" => type.IsFloatingPoint() ? F(double.NegativeInfinity, type) : $"(({ct})x[base])",
            "min" => type.IsFloatingPoint() ? F(double.PositiveInfinity, type) : $"(({ct})x[base])",
            "prod" => "1",
            _ => "0",
        };
        var divs = new Dictionary<int, string>();
        var strideArgs = new Dictionary<int, string>();
        foreach (var d in red.Reverse())
        {
            divs[d] = w.Div("r" + d, inShape[d]);
            strideArgs[d] = w.Size("rs" + d, strides[d]);
        }

        void Loop(string body)
        {
            b.Append("    for (").Append(ix).Append(" j = 0; j < ").Append(redN).Append("; j++) {\n        ").Append(ix).Append(" q = j; ").Append(ix).Append(" off = base;\n");
            foreach (var d in red.Reverse())
            {
                b.Append("        { ").Append(w.Peel(divs[d], "q", "c")).Append(" off += c * ").Append(strideArgs[d]).Append("; }\n");
            }

            b.Append("        const ").Append(acc).Append(" v = (").Append(acc).Append(")x[off];\n").Append(body).Append("    }\n");
        }

        if (kind == "logsumexp")
        {
            // Shifted by the maximum so large inputs do not overflow.
            b.Append("    ").Append(acc).Append(" m = ").Append(F(double.NegativeInfinity, type == ElementType.Double ? type : ElementType.Float)).Append(";\n");
            Loop("        m = v > m ? v : m;\n");
            b.Append("    if (isinf(m)) m = 0;\n");
        }

        b.Append("    ").Append(acc).Append(" acc = ").Append(init).Append(";\n");
        Loop(kind switch
        {
            "max" => "        acc = v > acc ? v : acc;\n",
            "min" => "        acc = v < acc ? v : acc;\n",
            "prod" => "        acc *= v;\n",
            "l1" => "        acc += v < 0 ? -v : v;\n",
            "l2" or "sumsquare" => "        acc += v * v;\n",
            "logsumexp" => type == ElementType.Double ? "        acc += exp(v - m);\n" : "        acc += expf(v - m);\n",
            _ => "        acc += v;\n",
        });
        var result = kind switch
        {
            "mean" => $"acc / ({acc}){redN}",
            "l2" => type == ElementType.Double ? "sqrt(acc)" : "sqrtf(acc)",
            "logsum" => type == ElementType.Double ? "log(acc)" : "logf(acc)",
            "logsumexp" => type == ElementType.Double ? "m + log(acc)" : "m + logf(acc)",
            _ => "acc",
        };
        b.Append("    y[i] = (").Append(ct).Append(")(").Append(result).Append(");\n");
        return w.Build($"{ct}* __restrict__ y, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Softmax (or log-softmax) over <paramref name="axisSize"/> elements spaced <paramref name="inner"/> apart; one warp per row.</summary>
    public static KernelCode Softmax(ElementType type, long rows, long axisSize, long inner, bool log)
    {
        var t = CType(type);
        var w = new KernelWriter(small: false);
        var r = w.I64("rows", rows);
        var ax = w.I64("axis", axisSize);
        var inn = w.I64("inner", inner);
        w.Body.Append($$"""
                i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
                int lane = threadIdx.x & 31;
                if (row >= {{r}}) return;
                i64 base = (row / {{inn}}) * {{ax}} * {{inn}} + (row % {{inn}});
                float m = -1.f / 0.f;
                for (i64 j = lane; j < {{ax}}; j += 32) m = fmaxf(m, (float)x[base + j * {{inn}}]);
                m = bw_warp_max(m);
                float s = 0.f;
                for (i64 j = lane; j < {{ax}}; j += 32) s += expf((float)x[base + j * {{inn}}] - m);
                s = bw_warp_sum(s);
                for (i64 j = lane; j < {{ax}}; j += 32) {
                    float v = (float)x[base + j * {{inn}}] - m;
                    y[base + j * {{inn}}] = {{(log ? "v - logf(s)" : "expf(v) / s")}};
                }

            """);
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Softmax over a short axis (up to 32 elements) of strided rows, one thread per row: neighbouring threads read
    /// neighbouring elements (a detection head's 16-bin softmax over [N, 4, 16, anchors] reads coalesced).
    /// </summary>
    public static KernelCode SoftmaxShortAxis(ElementType type, long rows, long axisSize, long inner, bool log)
    {
        var t = CType(type);
        var w = new KernelWriter(small: false);
        var r = w.I64("rows", rows);
        var ax = w.I32("axis", checked((int)axisSize));
        var inn = w.I64("inner", inner);
        w.Body.Append($$"""
                i64 row = (i64)blockIdx.x * blockDim.x + threadIdx.x;
                if (row >= {{r}}) return;
                i64 base = (row / {{inn}}) * {{ax}} * {{inn}} + (row % {{inn}});
                float m = -1.f / 0.f;
                for (int j = 0; j < {{ax}}; j++) m = fmaxf(m, (float)x[base + j * {{inn}}]);
                float s = 0.f;
                for (int j = 0; j < {{ax}}; j++) s += expf((float)x[base + j * {{inn}}] - m);
                for (int j = 0; j < {{ax}}; j++) {
                    float v = (float)x[base + j * {{inn}}] - m;
                    y[base + j * {{inn}}] = {{(log ? "v - logf(s)" : "expf(v) / s")}};
                }

            """);
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Layer normalisation over the last <paramref name="cols"/> elements of each row; one warp per row; optional Mean and InvStdDev outputs.</summary>
    public static KernelCode LayerNorm(ElementType type, ElementType paramType, ElementType statType, long rows, long cols, double epsilon, bool hasBias, long scaleCount, long biasCount)
    {
        var t = CType(type);
        var pt = CType(paramType);
        var st = CType(statType);
        var w = new KernelWriter(small: false);
        var r = w.I64("rows", rows);
        var c = w.I64("cols", cols);
        var sc = w.I64("scale_count", scaleCount);
        var bc = w.I64("bias_count", Math.Max(1, biasCount));
        w.Body.Append($$"""
                i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
                int lane = threadIdx.x & 31;
                if (row >= {{r}}) return;
                const {{t}}* xr = x + row * {{c}};
                {{t}}* yr = y + row * {{c}};
                float s = 0.f;
                for (i64 j = lane; j < {{c}}; j += 32) s += (float)xr[j];
                float mean = bw_warp_sum(s) / (float){{c}};
                float v = 0.f;
                for (i64 j = lane; j < {{c}}; j += 32) { float d = (float)xr[j] - mean; v += d * d; }
                float var = bw_warp_sum(v) / (float){{c}};
                float inv = 1.f / sqrtf(var + {{F(epsilon)}});
                for (i64 j = lane; j < {{c}}; j += 32) {
                    float r = ((float)xr[j] - mean) * inv * (float)scale[j % {{sc}}];
                    {{(hasBias ? $"r += (float)bias[j % {bc}];" : string.Empty)}}
                    yr[j] = r;
                }
                if (lane == 0) {
                    if (meanOut) meanOut[row] = mean;
                    if (invStdOut) invStdOut[row] = inv;
                }

            """);
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, const {pt}* __restrict__ scale, const {pt}* __restrict__ bias, {st}* __restrict__ meanOut, {st}* __restrict__ invStdOut, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Max or average pooling over N-d windows (N = 1 to 3) of an [N, C, spatial...] tensor; windows clipped at the padded
    /// borders as ONNX Runtime does. Window sizes, strides and dilations (attributes) are part of the kernel; sizes and
    /// pads are arguments.
    /// </summary>
    /// <remarks>
    /// With <paramref name="channelsLast"/> the tensor is stored [N, spatial..., C] with <paramref name="channels"/> channels
    /// (nc = N * C either way). With <paramref name="indices"/> (max, NCHW) each maximum's flat index into the input is
    /// written too (ONNX's Indices output; the first of equal maxima), the spatial part in column-major order with
    /// <paramref name="columnMajor"/> (storage_order 1).
    /// </remarks>
    public static KernelCode Pool(ElementType type, bool max, long nc, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] padsBegin, long[] padsEnd, long[] dilations, bool countIncludePad, bool channelsLast = false, long channels = 1, bool indices = false, bool columnMajor = false)
    {
        var r = inSpatial.Length;
        var ct = CType(type);
        var vector = PoolVector(type, channelsLast, channels, indices);
        var outCount = nc * Count(outSpatial) / vector;
        var inPlane = Count(inSpatial);
        var w = new KernelWriter(KernelWriter.Fits32(outCount) && KernelWriter.Fits32(nc * inPlane));
        var ix = w.Idx;
        var b = w.Body;
        var n = w.Size("n", outCount);
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(n).Append(") return;\n    ").Append(ix).Append(" r_ = i;\n");
        if (channelsLast)
        {
            b.Append("    ").Append(w.Peel(w.Div("channels", channels / vector), "r_", "ch")).Append('\n');
        }

        for (var d = r - 1; d >= 0; d--)
        {
            b.Append("    ").Append(w.Peel(w.Div("out" + d, outSpatial[d]), "r_", "o" + d)).Append('\n');
        }

        var inStrides = Strides(inSpatial);
        var plane = w.Size("plane", inPlane * (channelsLast ? channels : 1));
        b.Append("    const ").Append(ct).Append("* xp = x + r_ * ").Append(plane).Append(channelsLast ? $" + ch * {KernelWriter.Lit(vector)};\n" : ";\n");
        var ins = new string[r];
        var strideArgs = new string[r];
        for (var d = 0; d < r; d++)
        {
            ins[d] = w.I64("in" + d, inSpatial[d]);
            strideArgs[d] = w.I64("is" + d, inStrides[d] * (channelsLast ? channels : 1));
            var pb = w.I64("pb" + d, padsBegin[d]);
            var pe = w.I64("pe" + d, padsEnd[d]);
            b.Append("    const i64 s").Append(d).Append(" = (i64)o").Append(d).Append(" * ").Append(KernelWriter.Lit(strides[d])).Append(" - ").Append(pb).Append(";\n");
            b.Append("    const i64 e").Append(d).Append(" = s").Append(d).Append(" + ").Append(KernelWriter.Lit(((kernel[d] - 1) * dilations[d]) + 1)).Append(";\n");
            b.Append("    const i64 pe").Append(d).Append("_ = e").Append(d).Append(" < ").Append(ins[d]).Append(" + ").Append(pe).Append(" ? e").Append(d).Append(" : ").Append(ins[d]).Append(" + ").Append(pe).Append(";\n");
        }

        // With a vector, each thread pools that many neighbouring channels (one 16-byte load per window tap).
        var lanes = KernelWriter.Lit(vector);
        b.Append("    float acc[").Append(lanes).Append("];\n    #pragma unroll\n    for (int u = 0; u < ").Append(lanes).Append(max ? "; u++) acc[u] = -1.f / 0.f;\n" : "; u++) acc[u] = 0.f;\n");
        if (!max)
        {
            b.Append("    int cnt = 0;\n");
        }

        if (indices)
        {
            b.Append("    i64 at = 0;\n");
        }

        var indent = "    ";
        for (var d = 0; d < r; d++)
        {
            b.Append(indent).Append("for (int k").Append(d).Append(" = 0; k").Append(d).Append(" < ").Append(KernelWriter.Lit(kernel[d])).Append("; k").Append(d).Append("++) {\n");
            indent += "    ";
            b.Append(indent).Append("const i64 c").Append(d).Append(" = s").Append(d).Append(" + k").Append(d).Append(" * ").Append(KernelWriter.Lit(dilations[d])).Append(";\n");
            b.Append(indent).Append("if (c").Append(d).Append(" < 0 || c").Append(d).Append(" >= ").Append(ins[d]).Append(") continue;\n");
        }

        var offset = string.Join(" + ", Enumerable.Range(0, r).Select(d => $"c{d} * {strideArgs[d]}"));
        b.Append(indent).Append("const " + PoolVec + " e = *(const " + PoolVec + "*)(xp + ").Append(offset).Append(");\n");
        var at = columnMajor ? string.Join(" + ", Enumerable.Range(0, r).Select(d => $"c{d} * {w.I64("cm" + d, Count(inSpatial[..d]))}")) : offset;
        b.Append(indent).Append("#pragma unroll\n").Append(indent).Append("for (int u = 0; u < ").Append(lanes).Append("; u++) { const float v = (float)e.v[u]; ")
            .Append(max ? (indices ? $"if (v > acc[u]) {{ acc[u] = v; at = (i64)r_ * {plane} + {at}; }} }}\n" : "acc[u] = v > acc[u] ? v : acc[u]; }\n") : "acc[u] += v; }\n");
        if (!max)
        {
            b.Append(indent).Append("cnt++;\n");
        }

        for (var d = r - 1; d >= 0; d--)
        {
            indent = indent[..^4];
            b.Append(indent).Append("}\n");
        }

        if (!max)
        {
            if (countIncludePad)
            {
                // ONNX Runtime: the window clipped to the padded input, pads counted.
                var size = string.Join(" * ", Enumerable.Range(0, r).Select(d => $"(pe{d}_ - s{d})"));
                b.Append("    #pragma unroll\n    for (int u = 0; u < ").Append(lanes).Append("; u++) acc[u] /= (float)(").Append(size).Append(");\n");
            }
            else
            {
                b.Append("    #pragma unroll\n    for (int u = 0; u < ").Append(lanes).Append("; u++) acc[u] = cnt > 0 ? acc[u] / (float)cnt : 0.f;\n");
            }
        }

        b.Append("    " + PoolVec + " o;\n    #pragma unroll\n    for (int u = 0; u < ").Append(lanes).Append("; u++) o.v[u] = (").Append(ct).Append(")acc[u];\n");
        b.Append("    *(" + PoolVec + "*)(y + i * ").Append(lanes).Append(") = o;\n");
        if (indices)
        {
            b.Append("    ind[i] = at;\n");
        }

        var code = w.Build(indices
            ? $"{ct}* __restrict__ y, long long* __restrict__ ind, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}"
            : $"{ct}* __restrict__ y, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}");
        var align = KernelWriter.Lit(vector * type.SizeOf());
        var entry = code.Source.IndexOf("extern \"C\"", StringComparison.Ordinal);
        return code with { Source = code.Source.Insert(entry, $"struct __align__({align}) {PoolVec} {{ {ct} v[{lanes}]; }};\n") };
    }

    /// <summary>The vector type of a pooling kernel (named after the kernel, as several share one module).</summary>
    private const string PoolVec = Name + "_vec";

    /// <summary>
    /// Channels a pooling thread handles: 8 half-precision channels-last channels (one 16-byte load per tap; the
    /// one-channel-per-thread form ran at ~25% of bandwidth on ResNet-50's stem max pool at b=256), else 1.
    /// </summary>
    public static int PoolVector(ElementType type, bool channelsLast, long channels, bool indices) =>
        channelsLast && !indices && type == ElementType.Float16 && channels % 8 == 0 ? 8 : 1;

    /// <summary>Pad with constant, edge, reflect or wrap mode; negative pads crop.</summary>
    public static KernelCode Pad(ElementType type, long[] inShape, long[] outShape, long[] padsBegin, string mode, double value)
    {
        var ct = CType(type);
        var v = type.IsFloatingPoint() ? F(value, type) : ((long)value).ToString(CultureInfo.InvariantCulture);
        return PadCore(ct, $"({ct}){v}", inShape, outShape, padsBegin, mode);
    }

    /// <summary>
    /// A constant pad of bytes whose last axis is not padded and holds a multiple of 16 bytes (an int8 channels-last
    /// activation padded around its height and width): each thread moves 16 bytes (uint4), the fill byte repeated. The
    /// byte-per-thread <see cref="Pad"/> ran ResNet-50's int8 3x3 inputs at ~0.5 TB/s on an H200 (0.06-0.41 ms per
    /// layer at b=256, session 12). Threads: the output's bytes / 16.
    /// </summary>
    public static KernelCode PadBytes16(long[] inShape, long[] outShape, long[] padsBegin, byte fill)
    {
        if (!CanPadBytes16(inShape, outShape, padsBegin))
        {
            throw new ArgumentException("PadBytes16 wants the same last axis in and out, a multiple of 16 bytes, not padded");
        }

        long[] inVec = [.. inShape[..^1], inShape[^1] / 16], outVec = [.. outShape[..^1], outShape[^1] / 16];
        var word = string.Create(CultureInfo.InvariantCulture, $"0x{fill:X2}{fill:X2}{fill:X2}{fill:X2}u");
        return PadCore("uint4", $"uint4{{{word}, {word}, {word}, {word}}}", inVec, outVec, padsBegin, "constant");
    }

    /// <summary>Whether <see cref="PadBytes16"/> fits: the last axis equal in and out, a multiple of 16 bytes, unpadded.</summary>
    public static bool CanPadBytes16(long[] inShape, long[] outShape, long[] padsBegin) =>
        inShape.Length == outShape.Length && inShape.Length == padsBegin.Length && inShape.Length > 0 &&
        inShape[^1] == outShape[^1] && inShape[^1] % 16 == 0 && padsBegin[^1] == 0;

    private static KernelCode PadCore(string ct, string fillExpression, long[] inShape, long[] outShape, long[] padsBegin, string mode)
    {
        var inStrides = Strides(inShape);
        var w = new KernelWriter(KernelWriter.Fits32(Count(outShape)) && KernelWriter.Fits32(Count(inShape)));
        var ix = w.Idx;
        var b = w.Body;
        var n = w.Size("n", Count(outShape));
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(n).Append(") return;\n    ").Append(ix).Append(" r_ = i; i64 off = 0; bool outside = false;\n");
        for (var d = outShape.Length - 1; d >= 0; d--)
        {
            var div = w.Div("out" + d, outShape[d]);
            var dim = w.I64("in" + d, inShape[d]);
            var pad = w.I64("pad" + d, padsBegin[d]);
            var stride = w.I64("stride" + d, inStrides[d]);
            b.Append("    { ").Append(w.Peel(div, "r_", "o")).Append(" i64 c = (i64)o - ").Append(pad).Append(";\n");
            switch (mode)
            {
                case "edge":
                    b.Append("      c = c < 0 ? 0 : (c >= ").Append(dim).Append(" ? ").Append(dim).Append(" - 1 : c);\n");
                    break;
                case "reflect":
                    b.Append("      if (").Append(dim).Append(" > 1) { i64 p = 2 * (").Append(dim).Append(" - 1); c = c % p; if (c < 0) c += p; if (c >= ").Append(dim).Append(") c = p - c; } else c = 0;\n");
                    break;
                case "wrap":
                    b.Append("      c = c % ").Append(dim).Append("; if (c < 0) c += ").Append(dim).Append(";\n");
                    break;
                default:
                    b.Append("      if (c < 0 || c >= ").Append(dim).Append(") outside = true;\n");
                    break;
            }

            b.Append("      off += c * ").Append(stride).Append("; }\n");
        }

        b.Append("    y[i] = outside ? ").Append(fillExpression).Append(" : x[off];\n");
        return w.Build($"{ct}* __restrict__ y, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }

    /// <summary>Resize (nearest, linear or cubic, N-d) with ONNX's coordinate transformation and nearest rounding modes.</summary>
    /// <remarks>
    /// <para><paramref name="nearestElement"/> replaces the element's C type for nearest mode (whole channel runs as uint4).</para>
    /// <para>Which axes resize is part of the kernel; sizes and scales are arguments.</para>
    /// <para>Cubic mode weighs the 4 nearest inputs per axis by the cubic convolution kernel with <paramref name="cubicA"/>;
    /// taps beyond the edge read the edge, or with <paramref name="excludeOutside"/> get weight 0 (the rest renormalized).
    /// tf_crop_and_resize samples the region <paramref name="roi"/> ([starts..., ends...] as fractions of each axis) and
    /// writes <paramref name="extrapolation"/> where a sample falls outside the input.</para>
    /// </remarks>
    public static KernelCode Resize(ElementType type, long[] inShape, long[] outShape, double[] scales, string mode, string coordinateMode, string nearestMode, string? nearestElement = null, double cubicA = -0.75, bool excludeOutside = false, double[]? roi = null, double extrapolation = 0)
    {
        var crop = coordinateMode == "tf_crop_and_resize";
        if (crop && (roi is null || roi.Length != 2 * inShape.Length))
        {
            throw new ArgumentException("tf_crop_and_resize needs a region of interest of 2 x rank values", nameof(roi));
        }

        var ct = mode == "nearest" && nearestElement is not null ? nearestElement : CType(type);
        var rank = inShape.Length;
        var inStrides = Strides(inShape);
        var w = new KernelWriter(KernelWriter.Fits32(Count(outShape)) && KernelWriter.Fits32(Count(inShape)));
        var ix = w.Idx;
        var b = w.Body;
        var n = w.Size("n", Count(outShape));
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(n).Append(") return;\n    ").Append(ix).Append(" r_ = i;\n");
        b.Append("    i64 base = 0;\n");
        if (mode == "cubic")
        {
            b.Append("    const float cubic_a = ").Append(F(cubicA)).Append(";\n");
        }

        for (var d = rank - 1; d >= 1; d--)
        {
            b.Append("    ").Append(w.Peel(w.Div("out" + d, outShape[d]), "r_", "o" + d)).Append('\n');
        }

        b.Append("    const ").Append(ix).Append(" o0 = r_;\n");
        var active = new List<int>();
        for (var d = 0; d < rank; d++)
        {
            var stride = w.I64("stride" + d, inStrides[d]);
            if (inShape[d] == outShape[d] && scales[d] == 1.0 && !(crop && (roi![d] != 0 || roi[d + rank] != 1)))
            {
                b.Append("    base += (i64)o").Append(d).Append(" * ").Append(stride).Append(";\n");
                continue;
            }

            active.Add(d);
            var inD = inShape[d];
            var last = w.I64("last" + d, inD - 1);
            var resized = inD * scales[d]; // ONNX's length_resized: in * scale, not rounded (equals the output size when sizes are given)
            // Divided by the scale, not multiplied by its reciprocal: as ONNX Runtime computes it, so a coordinate that
            // lands exactly on .5 (test_resize_upsample_sizes_nearest: (3 + 0.5) / 3.5 - 0.5) stays .5 for nearest's
            // tie rule; 1/3.5 rounded up, times 3.5 in one FMA, gave 0.50000006 and the next row.
            var o = $"(float)o{d}";
            var coord = coordinateMode switch
            {
                "asymmetric" => $"{o} / {w.Float("scale" + d, scales[d])}",
                "align_corners" => $"{o} * {w.Float("k" + d, resized == 1 ? 0 : (inD - 1) / (resized - 1))}",
                "pytorch_half_pixel" => $"{w.Float("on" + d, resized > 1 ? 1 : 0)} * (({o} + 0.5f) / {w.Float("scale" + d, scales[d])} - 0.5f)",
                "tf_half_pixel_for_nn" => $"({o} + 0.5f) / {w.Float("scale" + d, scales[d])}",
                "half_pixel_symmetric" => $"{w.Float("shift" + d, inD / 2.0 * (1 - (outShape[d] / resized)))} + ({o} + 0.5f) / {w.Float("scale" + d, scales[d])} - 0.5f",
                "tf_crop_and_resize" => outShape[d] > 1
                    ? $"{w.Float("start" + d, roi![d] * (inD - 1))} + {o} * {w.Float("step" + d, (roi[d + rank] - roi[d]) * (inD - 1) / (outShape[d] - 1))}"
                    : $"{w.Float("start" + d, 0.5 * (roi![d] + roi[d + rank]) * (inD - 1))} + {o} * {w.Float("step" + d, 0)}",
                _ => $"({o} + 0.5f) / {w.Float("scale" + d, scales[d])} - 0.5f",
            };
            b.Append("    float f").Append(d).Append(" = ").Append(coord).Append(";\n");
            if (crop)
            {
                b.Append($"    if (f{d} < 0.f || f{d} > (float){last}) {{ y[i] = ({ct}){F(extrapolation, type)}; return; }}\n");
            }

            if (mode == "cubic")
            {
                b.Append($"    const i64 c{d} = (i64)floorf(f{d}); const float t{d} = f{d} - (float)c{d};\n");
                b.Append($"    float cw{d}[4]; i64 ci{d}[4]; float cs{d} = 0.f;\n");
                b.Append($"    for (int k = 0; k < 4; k++) {{ const float s = fabsf(t{d} + 1.f - (float)k); float q = s <= 1.f ? ((cubic_a + 2.f) * s - (cubic_a + 3.f)) * s * s + 1.f : s < 2.f ? ((cubic_a * s - 5.f * cubic_a) * s + 8.f * cubic_a) * s - 4.f * cubic_a : 0.f; i64 j = c{d} - 1 + k; if (j < 0 || j > {last}) {{ {(excludeOutside ? "q = 0.f; " : string.Empty)}j = j < 0 ? 0 : {last}; }} cw{d}[k] = q; ci{d}[k] = j; cs{d} += q; }}\n");
                if (excludeOutside)
                {
                    b.Append($"    for (int k = 0; k < 4; k++) cw{d}[k] /= cs{d};\n");
                }

                b.Append($"    const i64 st{d} = {stride};\n");
            }
            else if (mode == "nearest")
            {
                var round = nearestMode switch
                {
                    "floor" => $"floorf(f{d})",
                    "ceil" => $"ceilf(f{d})",
                    "round_prefer_ceil" => $"floorf(f{d} + 0.5f)",
                    _ => $"ceilf(f{d} - 0.5f)",
                };
                b.Append("    i64 n").Append(d).Append(" = (i64)").Append(round).Append("; n").Append(d).Append(" = n").Append(d).Append(" < 0 ? 0 : (n").Append(d).Append(" > ").Append(last).Append(" ? ").Append(last).Append(" : n").Append(d).Append(");\n");
                b.Append("    base += n").Append(d).Append(" * ").Append(stride).Append(";\n");
            }
            else
            {
                b.Append("    f").Append(d).Append(" = f").Append(d).Append(" < 0.f ? 0.f : (f").Append(d).Append(" > (float)").Append(last).Append(" ? (float)").Append(last).Append(" : f").Append(d).Append(");\n");
                b.Append("    const i64 lo").Append(d).Append(" = (i64)floorf(f").Append(d).Append("); const i64 hi").Append(d).Append(" = lo").Append(d).Append(" + 1 > ").Append(last).Append(" ? ").Append(last).Append(" : lo").Append(d).Append(" + 1;\n");
                b.Append("    const float w").Append(d).Append(" = f").Append(d).Append(" - (float)lo").Append(d).Append(";\n");
                b.Append("    const i64 st").Append(d).Append(" = ").Append(stride).Append(";\n");
            }
        }

        var signature = $"{ct}* __restrict__ y, const {ct}* __restrict__ x, {KernelWriter.ArgsParameter}";
        if (mode == "nearest" || active.Count == 0)
        {
            b.Append("    y[i] = x[base];\n");
            return w.Build(signature);
        }

        if (mode == "cubic")
        {
            b.Append("    float acc = 0.f;\n");
            var indent = "    ";
            foreach (var d in active)
            {
                b.Append($"{indent}for (int k{d} = 0; k{d} < 4; k{d}++)\n");
                indent += "    ";
            }

            b.Append($"{indent}acc += {string.Join(" * ", active.Select(d => $"cw{d}[k{d}]"))} * (float)x[base + {string.Join(" + ", active.Select(d => $"ci{d}[k{d}] * st{d}"))}];\n");
            b.Append("    y[i] = (").Append(ct).Append(")acc;\n");
            return w.Build(signature);
        }

        b.Append("    float acc = 0.f;\n");
        for (var corner = 0; corner < 1 << active.Count; corner++)
        {
            var weight = new List<string>();
            var offset = new List<string> { "base" };
            for (var k = 0; k < active.Count; k++)
            {
                var d = active[k];
                var hi = (corner >> k & 1) == 1;
                weight.Add(hi ? $"w{d}" : $"(1.f - w{d})");
                offset.Add($"{(hi ? "hi" : "lo")}{d} * st{d}");
            }

            b.Append("    acc += ").Append(string.Join(" * ", weight)).Append(" * (float)x[").Append(string.Join(" + ", offset)).Append("];\n");
        }

        b.Append("    y[i] = (").Append(ct).Append(")acc;\n");
        return w.Build(signature);
    }
}
