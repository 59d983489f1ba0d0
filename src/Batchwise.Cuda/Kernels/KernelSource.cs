using System.Globalization;
using System.Text;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Generates CUDA C for the plan's kernels with the shapes baked in as constants. Each generator returns the source of
/// one <c>extern "C" __global__</c> function named <see cref="Name"/>; the compiler renames it and compiles them all
/// in one NVRTC program per plan.
/// </summary>
internal static class KernelSource
{
    /// <summary>The placeholder for the kernel's name in generated source.</summary>
    public const string Name = "KERNEL_NAME";

    /// <summary>Threads per block for one-thread-per-element kernels.</summary>
    public const int BlockSize = 256;

    /// <summary>Definitions every plan's program starts with.</summary>
    public const string Prelude = """
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
        __device__ __forceinline__ float bw_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
        __device__ __forceinline__ double bw_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
        __device__ __forceinline__ float bw_softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }
        __device__ __forceinline__ float bw_gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
        __device__ __forceinline__ float bw_gelu_tanh(float x) { return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
        __device__ __forceinline__ float bw_warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
        __device__ __forceinline__ float bw_warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }

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
        _ => throw new BatchwiseException($"Tensors of {t.ShortName()} are not supported by the cuda engine yet", "Use float32 (fp16 comes with --precision fp16)."),
    };

    /// <summary>The type values are computed in: float for half precision (loads convert), the storage type otherwise.</summary>
    public static ElementType ComputeType(ElementType t) => t == ElementType.Float16 ? ElementType.Float : t;

    /// <summary>An unsigned type of the same size, for kernels that only move elements.</summary>
    public static string MoveType(int elementSize) => elementSize switch
    {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
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

    private static string L(long v) => v.ToString(CultureInfo.InvariantCulture) + "LL";

    /// <summary>
    /// An elementwise kernel with numpy broadcasting: output of <paramref name="outShape"/>, inputs already right-aligned to
    /// its rank (size-1 dimensions broadcast). <paramref name="expression"/> uses x0, x1, ... for the inputs' values.
    /// </summary>
    /// <remarks><paramref name="statements"/> (fused chains) run before the expression and may define what it uses.</remarks>
    public static string Elementwise(ElementType outType, IReadOnlyList<ElementType> inTypes, long[] outShape, IReadOnlyList<long[]> inShapes, string expression, string? statements = null, int vector = 1)
    {
        var sb = new StringBuilder();
        var n = Count(outShape);

        // 32-bit index arithmetic where every index fits: division by a constant is then a multiply and a shift,
        // where 64-bit division is a long software routine.
        var small = n < int.MaxValue && inShapes.All(s => Count(s) < int.MaxValue);
        var ix = small ? "unsigned" : "i64";
        string Lit(long v) => small ? v.ToString(CultureInfo.InvariantCulture) + "u" : L(v);
        sb.Append("extern \"C\" __global__ void ").Append(Name).Append('(').Append(CType(outType)).Append("* __restrict__ y");
        for (var i = 0; i < inTypes.Count; i++)
        {
            sb.Append(", const ").Append(CType(inTypes[i])).Append("* __restrict__ p").Append(i);
        }

        sb.Append(")\n{\n");
        var indent = "    ";
        if (vector > 1)
        {
            // Each thread: `vector` consecutive elements, full-shape inputs and the output moved 16 bytes at a time.
            sb.Append("    ").Append(ix).Append(" first = ((").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x) * ").Append(Lit(vector)).Append(";\n");
            sb.Append("    if (first >= ").Append(Lit(n)).Append(") return;\n");
            for (var k = 0; k < inShapes.Count; k++)
            {
                if (inShapes[k].SequenceEqual(outShape) && Count(outShape) > 1)
                {
                    sb.Append("    const uint4 v").Append(k).Append(" = *(const uint4*)(p").Append(k).Append(" + first); const ").Append(CType(inTypes[k])).Append("* a").Append(k).Append(" = (const ").Append(CType(inTypes[k])).Append("*)&v").Append(k).Append(";\n");
                }
            }

            sb.Append("    uint4 out; ").Append(CType(outType)).Append("* o = (").Append(CType(outType)).Append("*)&out;\n");
            sb.Append("    #pragma unroll\n    for (int j = 0; j < ").Append(vector).Append("; j++) {\n");
            sb.Append("    const ").Append(ix).Append(" i = first + j;\n");
            indent = "    ";
        }
        else
        {
            sb.Append("    ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
            sb.Append("    if (i >= ").Append(Lit(n)).Append(") return;\n");
        }

        var outStrides = Strides(outShape);
        for (var k = 0; k < inShapes.Count; k++)
        {
            var shape = inShapes[k];
            if (shape.Length != outShape.Length)
            {
                throw new ArgumentException("input shapes must be right-aligned to the output rank");
            }

            string index;
            if (Count(shape) == 1)
            {
                index = "0";
            }
            else if (shape.SequenceEqual(outShape))
            {
                index = "i";
            }
            else
            {
                // Sum over broadcast dimensions: coordinate d of the output times the input's stride (0 where it broadcasts).
                var strides = Strides(shape);
                var terms = new List<string>();
                for (var d = 0; d < outShape.Length; d++)
                {
                    if (shape[d] == 1 || outShape[d] == 1)
                    {
                        continue;
                    }

                    var coord = d == 0 ? $"(i / {Lit(outStrides[0])})" : $"((i / {Lit(outStrides[d])}) % {Lit(outShape[d])})";
                    terms.Add(strides[d] == 1 ? coord : $"{coord} * {Lit(strides[d])}");
                }

                index = terms.Count == 0 ? "0" : string.Join(" + ", terms);
            }

            var load = vector > 1 && index == "i" ? $"a{k}[j]" : $"p{k}[{index}]";
            sb.Append(indent).Append("const ").Append(CType(ComputeType(inTypes[k]))).Append(" x").Append(k).Append(" = ").Append(load).Append(";\n");
        }

        sb.Append(statements);
        var store = vector > 1 ? "o[j]" : "y[i]";
        sb.Append(indent).Append(store).Append(" = (").Append(CType(outType)).Append(outType == ElementType.Float16 ? ")(float)(" : ")(").Append(expression).Append(");\n");
        if (vector > 1)
        {
            sb.Append("    }\n    *(uint4*)(y + first) = out;\n");
        }

        sb.Append("}\n");
        return sb.ToString();
    }

    /// <summary>
    /// How many elements one thread of <see cref="Elementwise"/> can take, 16 bytes at a time: 8 half or 4 float values
    /// when the output and every full-shape input have that size and the element count divides; otherwise 1.
    /// </summary>
    public static int ElementwiseVector(ElementType outType, IReadOnlyList<ElementType> inTypes, long[] outShape, IReadOnlyList<long[]> inShapes)
    {
        var size = outType.SizeOf();
        if (size is not (2 or 4) || !outType.IsFloatingPoint())
        {
            return 1;
        }

        var k = 16 / size;
        var n = Count(outShape);
        var fullOk = Enumerable.Range(0, inShapes.Count).All(i => !inShapes[i].SequenceEqual(outShape) || inTypes[i].SizeOf() == size);
        return n % k == 0 && n >= k && fullOk ? k : 1;
    }

    /// <summary>
    /// Copies a strided view into another: for every coordinate c of <paramref name="shape"/>,
    /// dst[dstBase + sum c*dstStrides] = src[srcBase + sum c*srcStrides]. Transpose, Slice, Expand, Concat, Split use it.
    /// </summary>
    /// <remarks>
    /// Where the innermost dimension is contiguous on both sides and every offset allows it, each thread moves 16, 8 or 4
    /// bytes at once (a channels-last Concat copies runs of a few dozen half values: 8 at a time, not 1).
    /// </remarks>
    public static string ViewCopy(int elementSize, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase)
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
                var type = width switch { 16 => "uint4", 8 => "uint2", _ => "unsigned int" };
                return ViewCopy(type, type, vs, ss, srcBase / k, ds, dstBase / k);
            }
        }

        return ViewCopy(MoveType(elementSize), MoveType(elementSize), shape, srcStrides, srcBase, dstStrides, dstBase);
    }

    /// <summary>
    /// A strided copy that also converts the element type (e.g. float32 NCHW to float16 NHWC at a plan's input and back at
    /// its outputs); values go through float.
    /// </summary>
    public static string ConvertCopy(ElementType from, ElementType to, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase) =>
        from == to
            ? ViewCopy(from.SizeOf(), shape, srcStrides, srcBase, dstStrides, dstBase)
            : ViewCopy(CType(from), CType(to), shape, srcStrides, srcBase, dstStrides, dstBase);

    private static string ViewCopy(string srcType, string dstType, long[] shape, long[] srcStrides, long srcBase, long[] dstStrides, long dstBase)
    {
        (shape, srcStrides, dstStrides) = Collapse(shape, srcStrides, dstStrides);

        // 32-bit index arithmetic when every offset is non-negative and fits (negative-step slices stay 64-bit).
        var srcMax = srcBase + shape.Select((d, k) => (d - 1) * srcStrides[k]).Sum();
        var dstMax = dstBase + shape.Select((d, k) => (d - 1) * dstStrides[k]).Sum();
        var small = srcBase >= 0 && dstBase >= 0 && srcStrides.All(x => x >= 0) && dstStrides.All(x => x >= 0) && srcMax < int.MaxValue && dstMax < int.MaxValue && Count(shape) < int.MaxValue;
        var ix = small ? "unsigned" : "i64";
        string Lit(long v) => small ? v.ToString(CultureInfo.InvariantCulture) + "u" : L(v);
        var sb = new StringBuilder();
        sb.Append("extern \"C\" __global__ void ").Append(Name).Append('(').Append(dstType).Append("* __restrict__ dst, const ").Append(srcType).Append("* __restrict__ src)\n{\n");
        sb.Append("    ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    if (i >= ").Append(Lit(Count(shape))).Append(") return;\n");
        sb.Append("    ").Append(ix).Append(" r = i; ").Append(ix).Append(" s = ").Append(Lit(srcBase)).Append("; ").Append(ix).Append(" d = ").Append(Lit(dstBase)).Append(";\n");
        for (var k = shape.Length - 1; k >= 0; k--)
        {
            sb.Append("    { ").Append(ix).Append(" c = r % ").Append(Lit(shape[k])).Append("; r /= ").Append(Lit(shape[k])).Append("; s += c * ").Append(Lit(srcStrides[k])).Append("; d += c * ").Append(Lit(dstStrides[k])).Append("; }\n");
        }

        sb.Append(srcType == dstType ? "    dst[d] = src[s];\n}\n" : $"    dst[d] = ({dstType})(float)src[s];\n}}\n");
        return sb.ToString();
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
    public static string Gather(int elementSize, ElementType indexType, long outer, long axisSize, long inner, long indexCount)
    {
        var t = MoveType(elementSize);
        return $$"""
            extern "C" __global__ void {{Name}}({{t}}* __restrict__ y, const {{t}}* __restrict__ data, const {{CType(indexType)}}* __restrict__ idx)
            {
                i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
                if (i >= {{L(outer * indexCount * inner)}}) return;
                i64 in_ = i % {{L(inner)}};
                i64 j = (i / {{L(inner)}}) % {{L(indexCount)}};
                i64 o = i / {{L(inner * indexCount)}};
                i64 k = (i64)idx[j];
                if (k < 0) k += {{L(axisSize)}};
                if (k < 0 || k >= {{L(axisSize)}}) { y[i] = 0; return; }
                y[i] = data[(o * {{L(axisSize)}} + k) * {{L(inner)}} + in_];
            }

            """;
    }

    /// <summary>A reduction over some axes (one thread per output): kind is mean, sum, max, min, prod, l1, l2 or sumsquare.</summary>
    public static string Reduce(ElementType type, string kind, long[] inShape, bool[] reduced)
    {
        var strides = Strides(inShape);
        var kept = Enumerable.Range(0, inShape.Length).Where(d => !reduced[d]).ToArray();
        var red = Enumerable.Range(0, inShape.Length).Where(d => reduced[d]).ToArray();
        var outCount = kept.Aggregate(1L, (a, d) => a * inShape[d]);
        var redCount = red.Aggregate(1L, (a, d) => a * inShape[d]);
        var ct = CType(type);
        var acc = type == ElementType.Double ? "double" : type.IsFloatingPoint() ? "float" : ct;
        var sb = new StringBuilder();
        sb.Append("extern \"C\" __global__ void ").Append(Name).Append('(').Append(ct).Append("* __restrict__ y, const ").Append(ct).Append("* __restrict__ x)\n{\n");
        sb.Append("    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    if (i >= ").Append(L(outCount)).Append(") return;\n");
        sb.Append("    i64 r = i; i64 base = 0;\n");
        foreach (var d in kept.Reverse())
        {
            sb.Append("    { i64 c = r % ").Append(L(inShape[d])).Append("; r /= ").Append(L(inShape[d])).Append("; base += c * ").Append(L(strides[d])).Append("; }\n");
        }

        var init = kind switch
        {
            "max" => type.IsFloatingPoint() ? F(double.NegativeInfinity, type) : $"(({ct})x[base])",
            "min" => type.IsFloatingPoint() ? F(double.PositiveInfinity, type) : $"(({ct})x[base])",
            "prod" => "1",
            _ => "0",
        };
        sb.Append("    ").Append(acc).Append(" a = ").Append(init).Append(";\n");
        sb.Append("    for (i64 j = 0; j < ").Append(L(redCount)).Append("; j++) {\n        i64 q = j; i64 off = base;\n");
        foreach (var d in red.Reverse())
        {
            sb.Append("        { i64 c = q % ").Append(L(inShape[d])).Append("; q /= ").Append(L(inShape[d])).Append("; off += c * ").Append(L(strides[d])).Append("; }\n");
        }

        sb.Append("        ").Append(acc).Append(" v = (").Append(acc).Append(")x[off];\n");
        sb.Append(kind switch
        {
            "max" => "        a = v > a ? v : a;\n",
            "min" => "        a = v < a ? v : a;\n",
            "prod" => "        a *= v;\n",
            "l1" => "        a += v < 0 ? -v : v;\n",
            "l2" or "sumsquare" => "        a += v * v;\n",
            _ => "        a += v;\n",
        });
        sb.Append("    }\n");
        var result = kind switch
        {
            "mean" => $"a / ({acc}){redCount}",
            "l2" => type == ElementType.Double ? "sqrt(a)" : "sqrtf(a)",
            _ => "a",
        };
        sb.Append("    y[i] = (").Append(ct).Append(")(").Append(result).Append(");\n}\n");
        return sb.ToString();
    }

    /// <summary>Softmax (or log-softmax) over <paramref name="axisSize"/> elements spaced <paramref name="inner"/> apart; one warp per row.</summary>
    public static string Softmax(ElementType type, long rows, long axisSize, long inner, bool log)
    {
        var t = CType(type);
        return $$"""
            extern "C" __global__ void {{Name}}({{t}}* __restrict__ y, const {{t}}* __restrict__ x)
            {
                i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
                int lane = threadIdx.x & 31;
                if (row >= {{L(rows)}}) return;
                i64 base = (row / {{L(inner)}}) * {{L(axisSize * inner)}} + (row % {{L(inner)}});
                float m = -1.f / 0.f;
                for (i64 j = lane; j < {{L(axisSize)}}; j += 32) m = fmaxf(m, (float)x[base + j * {{L(inner)}}]);
                m = bw_warp_max(m);
                float s = 0.f;
                for (i64 j = lane; j < {{L(axisSize)}}; j += 32) s += expf((float)x[base + j * {{L(inner)}}] - m);
                s = bw_warp_sum(s);
                for (i64 j = lane; j < {{L(axisSize)}}; j += 32) {
                    float v = (float)x[base + j * {{L(inner)}}] - m;
                    y[base + j * {{L(inner)}}] = {{(log ? "v - logf(s)" : "expf(v) / s")}};
                }
            }

            """;
    }

    /// <summary>
    /// Softmax over a short axis (up to 32 elements) of strided rows, one thread per row: neighbouring threads read
    /// neighbouring elements (a detection head's 16-bin softmax over [N, 4, 16, anchors] reads coalesced).
    /// </summary>
    public static string SoftmaxShortAxis(ElementType type, long rows, long axisSize, long inner, bool log)
    {
        var t = CType(type);
        return $$"""
            extern "C" __global__ void {{Name}}({{t}}* __restrict__ y, const {{t}}* __restrict__ x)
            {
                i64 row = (i64)blockIdx.x * blockDim.x + threadIdx.x;
                if (row >= {{L(rows)}}) return;
                i64 base = (row / {{L(inner)}}) * {{L(axisSize * inner)}} + (row % {{L(inner)}});
                float m = -1.f / 0.f;
                for (int j = 0; j < {{axisSize}}; j++) m = fmaxf(m, (float)x[base + j * {{L(inner)}}]);
                float s = 0.f;
                for (int j = 0; j < {{axisSize}}; j++) s += expf((float)x[base + j * {{L(inner)}}] - m);
                for (int j = 0; j < {{axisSize}}; j++) {
                    float v = (float)x[base + j * {{L(inner)}}] - m;
                    y[base + j * {{L(inner)}}] = {{(log ? "v - logf(s)" : "expf(v) / s")}};
                }
            }

            """;
    }

    /// <summary>Layer normalisation over the last <paramref name="cols"/> elements of each row; one warp per row; optional Mean and InvStdDev outputs.</summary>
    public static string LayerNorm(ElementType type, ElementType paramType, ElementType statType, long rows, long cols, double epsilon, bool hasBias, long scaleCount, long biasCount)
    {
        var t = CType(type);
        var pt = CType(paramType);
        var st = CType(statType);
        return $$"""
            extern "C" __global__ void {{Name}}({{t}}* __restrict__ y, const {{t}}* __restrict__ x, const {{pt}}* __restrict__ scale, const {{pt}}* __restrict__ bias, {{st}}* __restrict__ meanOut, {{st}}* __restrict__ invStdOut)
            {
                i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
                int lane = threadIdx.x & 31;
                if (row >= {{L(rows)}}) return;
                const {{t}}* xr = x + row * {{L(cols)}};
                {{t}}* yr = y + row * {{L(cols)}};
                float s = 0.f;
                for (i64 j = lane; j < {{L(cols)}}; j += 32) s += (float)xr[j];
                float mean = bw_warp_sum(s) / (float){{L(cols)}};
                float v = 0.f;
                for (i64 j = lane; j < {{L(cols)}}; j += 32) { float d = (float)xr[j] - mean; v += d * d; }
                float var = bw_warp_sum(v) / (float){{L(cols)}};
                float inv = 1.f / sqrtf(var + {{F(epsilon)}});
                for (i64 j = lane; j < {{L(cols)}}; j += 32) {
                    float r = ((float)xr[j] - mean) * inv * (float)scale[j % {{L(scaleCount)}}];
                    {{(hasBias ? $"r += (float)bias[j % {L(biasCount)}];" : string.Empty)}}
                    yr[j] = r;
                }
                if (lane == 0) {
                    if (meanOut) meanOut[row] = mean;
                    if (invStdOut) invStdOut[row] = inv;
                }
            }

            """;
    }

    /// <summary>
    /// Max or average pooling over N-d windows (N = 1 to 3) of an [N, C, spatial...] tensor; windows clipped at the padded
    /// borders as ONNX Runtime does.
    /// </summary>
    /// <remarks>With <paramref name="channelsLast"/> the tensor is stored [N, spatial..., C] with <paramref name="channels"/> channels (nc = N * C either way).</remarks>
    public static string Pool(ElementType type, bool max, long nc, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] padsBegin, long[] padsEnd, long[] dilations, bool countIncludePad, bool channelsLast = false, long channels = 1)
    {
        var r = inSpatial.Length;
        var sb = new StringBuilder();
        var ct = CType(type);
        sb.Append("extern \"C\" __global__ void ").Append(Name).Append('(').Append(ct).Append("* __restrict__ y, const ").Append(ct).Append("* __restrict__ x)\n{\n");
        var outCount = nc * outSpatial.Aggregate(1L, (a, b) => a * b);
        var inPlane = inSpatial.Aggregate(1L, (a, b) => a * b);
        sb.Append("    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    if (i >= ").Append(L(outCount)).Append(") return;\n    i64 r = i;\n");
        if (channelsLast)
        {
            sb.Append("    i64 ch = r % ").Append(L(channels)).Append("; r /= ").Append(L(channels)).Append(";\n");
        }

        for (var d = r - 1; d >= 0; d--)
        {
            sb.Append("    i64 o").Append(d).Append(" = r % ").Append(L(outSpatial[d])).Append("; r /= ").Append(L(outSpatial[d])).Append(";\n");
        }

        var inStrides = Strides(inSpatial);
        if (channelsLast)
        {
            sb.Append("    const ").Append(ct).Append("* xp = x + r * ").Append(L(inPlane * channels)).Append(" + ch;\n");
            inStrides = inStrides.Select(v => v * channels).ToArray();
        }
        else
        {
            sb.Append("    const ").Append(ct).Append("* xp = x + r * ").Append(L(inPlane)).Append(";\n");
        }

        for (var d = 0; d < r; d++)
        {
            sb.Append("    i64 s").Append(d).Append(" = o").Append(d).Append(" * ").Append(L(strides[d])).Append(" - ").Append(L(padsBegin[d])).Append(";\n");
            sb.Append("    i64 e").Append(d).Append(" = s").Append(d).Append(" + ").Append(L((kernel[d] - 1) * dilations[d] + 1)).Append(";\n");
            sb.Append("    i64 pe").Append(d).Append(" = e").Append(d).Append(" < ").Append(L(inSpatial[d] + padsEnd[d])).Append(" ? e").Append(d).Append(" : ").Append(L(inSpatial[d] + padsEnd[d])).Append(";\n");
        }

        sb.Append(max ? "    float a = -1.f / 0.f;\n" : "    float a = 0.f; i64 n = 0;\n");
        var indent = "    ";
        for (var d = 0; d < r; d++)
        {
            sb.Append(indent).Append("for (i64 k").Append(d).Append(" = 0; k").Append(d).Append(" < ").Append(L(kernel[d])).Append("; k").Append(d).Append("++) {\n");
            indent += "    ";
            sb.Append(indent).Append("i64 c").Append(d).Append(" = s").Append(d).Append(" + k").Append(d).Append(" * ").Append(L(dilations[d])).Append(";\n");
            sb.Append(indent).Append("if (c").Append(d).Append(" < 0 || c").Append(d).Append(" >= ").Append(L(inSpatial[d])).Append(") continue;\n");
        }

        var offset = string.Join(" + ", Enumerable.Range(0, r).Select(d => $"c{d} * {L(inStrides[d])}"));
        sb.Append(indent).Append("float v = (float)xp[").Append(offset).Append("];\n");
        sb.Append(indent).Append(max ? "a = v > a ? v : a;\n" : "a += v; n++;\n");
        for (var d = r - 1; d >= 0; d--)
        {
            indent = indent[..^4];
            sb.Append(indent).Append("}\n");
        }

        if (!max)
        {
            if (countIncludePad)
            {
                // ONNX Runtime: the window clipped to the padded input, pads counted.
                var size = string.Join(" * ", Enumerable.Range(0, r).Select(d => $"(pe{d} - s{d})"));
                sb.Append("    a /= (float)(").Append(size).Append(");\n");
            }
            else
            {
                sb.Append("    a = n > 0 ? a / (float)n : 0.f;\n");
            }
        }

        sb.Append("    y[i] = (").Append(ct).Append(")a;\n}\n");
        return sb.ToString();
    }

    /// <summary>Pad with constant, edge, reflect or wrap mode; negative pads crop.</summary>
    public static string Pad(ElementType type, long[] inShape, long[] outShape, long[] padsBegin, string mode, double value)
    {
        var ct = CType(type);
        var inStrides = Strides(inShape);
        var sb = new StringBuilder();
        sb.Append("extern \"C\" __global__ void ").Append(Name).Append('(').Append(ct).Append("* __restrict__ y, const ").Append(ct).Append("* __restrict__ x)\n{\n");
        sb.Append("    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    if (i >= ").Append(L(Count(outShape))).Append(") return;\n    i64 r = i; i64 off = 0; bool outside = false;\n");
        for (var d = outShape.Length - 1; d >= 0; d--)
        {
            var n = inShape[d];
            sb.Append("    { i64 c = r % ").Append(L(outShape[d])).Append(" - ").Append(L(padsBegin[d])).Append("; r /= ").Append(L(outShape[d])).Append(";\n");
            switch (mode)
            {
                case "edge":
                    sb.Append("      c = c < 0 ? 0 : (c >= ").Append(L(n)).Append(" ? ").Append(L(n - 1)).Append(" : c);\n");
                    break;
                case "reflect":
                    sb.Append("      if (").Append(L(n)).Append(" > 1) { i64 p = ").Append(L(2 * (n - 1))).Append("; c = c % p; if (c < 0) c += p; if (c >= ").Append(L(n)).Append(") c = p - c; } else c = 0;\n");
                    break;
                case "wrap":
                    sb.Append("      c = c % ").Append(L(n)).Append("; if (c < 0) c += ").Append(L(n)).Append(";\n");
                    break;
                default:
                    sb.Append("      if (c < 0 || c >= ").Append(L(n)).Append(") outside = true;\n");
                    break;
            }

            sb.Append("      off += c * ").Append(L(inStrides[d])).Append("; }\n");
        }

        var v = type.IsFloatingPoint() ? F(value, type) : ((long)value).ToString(CultureInfo.InvariantCulture);
        sb.Append("    y[i] = outside ? (").Append(ct).Append(")").Append(v).Append(" : x[off];\n}\n");
        return sb.ToString();
    }

    /// <summary>Resize (nearest or linear, N-d) with ONNX's coordinate transformation and nearest rounding modes.</summary>
    public static string Resize(ElementType type, long[] inShape, long[] outShape, double[] scales, string mode, string coordinateMode, string nearestMode)
    {
        var ct = CType(type);
        var rank = inShape.Length;
        var inStrides = Strides(inShape);
        var sb = new StringBuilder();
        sb.Append("extern \"C\" __global__ void ").Append(Name).Append('(').Append(ct).Append("* __restrict__ y, const ").Append(ct).Append("* __restrict__ x)\n{\n");
        sb.Append("    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;\n");
        sb.Append("    if (i >= ").Append(L(Count(outShape))).Append(") return;\n    i64 r = i;\n");
        var active = new List<int>();
        sb.Append("    i64 base = 0;\n");
        for (var d = rank - 1; d >= 0; d--)
        {
            sb.Append("    i64 o").Append(d).Append(" = r % ").Append(L(outShape[d])).Append("; r /= ").Append(L(outShape[d])).Append(";\n");
        }

        for (var d = 0; d < rank; d++)
        {
            if (inShape[d] == outShape[d] && scales[d] == 1.0)
            {
                sb.Append("    base += o").Append(d).Append(" * ").Append(L(inStrides[d])).Append(";\n");
                continue;
            }

            active.Add(d);
            var s = F(scales[d]);
            var o = $"(float)o{d}";
            var inD = inShape[d];
            var resized = inD * scales[d]; // ONNX's length_resized: in * scale, not rounded (equals the output size when sizes are given)
            var coord = coordinateMode switch
            {
                "asymmetric" => $"{o} / {s}",
                "align_corners" => resized == 1 ? "0.f" : $"{o} * {F((inD - 1) / (resized - 1))}",
                "pytorch_half_pixel" => resized > 1 ? $"({o} + 0.5f) / {s} - 0.5f" : "0.f",
                "tf_half_pixel_for_nn" => $"({o} + 0.5f) / {s}",
                "half_pixel_symmetric" => $"{F(inD / 2.0 * (1 - outShape[d] / resized))} + ({o} + 0.5f) / {s} - 0.5f",
                _ => $"({o} + 0.5f) / {s} - 0.5f",
            };
            sb.Append("    float f").Append(d).Append(" = ").Append(coord).Append(";\n");
            if (mode == "nearest")
            {
                var round = nearestMode switch
                {
                    "floor" => $"floorf(f{d})",
                    "ceil" => $"ceilf(f{d})",
                    "round_prefer_ceil" => $"floorf(f{d} + 0.5f)",
                    _ => $"ceilf(f{d} - 0.5f)",
                };
                sb.Append("    i64 n").Append(d).Append(" = (i64)").Append(round).Append("; n").Append(d).Append(" = n").Append(d).Append(" < 0 ? 0 : (n").Append(d).Append(" > ").Append(L(inD - 1)).Append(" ? ").Append(L(inD - 1)).Append(" : n").Append(d).Append(");\n");
                sb.Append("    base += n").Append(d).Append(" * ").Append(L(inStrides[d])).Append(";\n");
            }
            else
            {
                sb.Append("    f").Append(d).Append(" = f").Append(d).Append(" < 0.f ? 0.f : (f").Append(d).Append(" > ").Append(F(inD - 1)).Append(" ? ").Append(F(inD - 1)).Append(" : f").Append(d).Append(");\n");
                sb.Append("    i64 a").Append(d).Append(" = (i64)floorf(f").Append(d).Append("); i64 b").Append(d).Append(" = a").Append(d).Append(" + 1 > ").Append(L(inD - 1)).Append(" ? ").Append(L(inD - 1)).Append(" : a").Append(d).Append(" + 1;\n");
                sb.Append("    float w").Append(d).Append(" = f").Append(d).Append(" - (float)a").Append(d).Append(";\n");
            }
        }

        if (mode == "nearest" || active.Count == 0)
        {
            sb.Append("    y[i] = x[base];\n}\n");
            return sb.ToString();
        }

        sb.Append("    float acc = 0.f;\n");
        for (var corner = 0; corner < 1 << active.Count; corner++)
        {
            var weight = new List<string>();
            var offset = new List<string> { "base" };
            for (var k = 0; k < active.Count; k++)
            {
                var d = active[k];
                var hi = (corner >> k & 1) == 1;
                weight.Add(hi ? $"w{d}" : $"(1.f - w{d})");
                offset.Add($"{(hi ? "b" : "a")}{d} * {L(inStrides[d])}");
            }

            sb.Append("    acc += ").Append(string.Join(" * ", weight)).Append(" * (float)x[").Append(string.Join(" + ", offset)).Append("];\n");
        }

        sb.Append("    y[i] = (").Append(ct).Append(")acc;\n}\n");
        return sb.ToString();
    }
}
