using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Matrix products with few rows (a classifier head at batch 1 to 8): Y [M, N] = act(alpha A W^T + beta C + bias) with
/// W [N, K] read row by row. The product is a pass over W; cuBLASLt's fastest of its top eight algorithms took 13.6 us for
/// ResNet-50's classifier (M 1, N 1,000, K 2,048, fp16, 4 MB of weights) on an H200, where reading W once is a few us.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>Threads per block of <see cref="SmallRows"/>: four warps, one output column each.</summary>
    public const int SmallRowsBlock = 128;

    /// <summary>The most rows <see cref="SmallRows"/> takes (its accumulators are unrolled to this many).</summary>
    public const int SmallRowsMax = 8;

    /// <summary>Elements of one 16-byte load where <paramref name="k"/>, <paramref name="lda"/> and <paramref name="ldw"/> are all multiples of it, else 1 (scalar loads).</summary>
    public static int SmallRowsVector(ElementType type, long k, long lda, long ldw)
    {
        var v = 16 / type.SizeOf();
        return k % v == 0 && lda % v == 0 && ldw % v == 0 ? v : 1;
    }

    /// <summary>
    /// Y[m, n] = act(alpha * sum_k A[m, k] * W[n, k] + beta * C[m, n] + bias[n]) for 1 &lt;= M &lt;= 8, in cuBLASLt's
    /// order (the product scaled, C added, then the bias, then ReLU), accumulated in float. A is row-major with row pitch
    /// <paramref name="lda"/>, W row-major [N, K] with row pitch <paramref name="ldw"/>, Y and C contiguous [M, N], the
    /// bias N; all of <paramref name="type"/> (float32 or float16). One warp per output column n: its lanes stride over K
    /// (16-byte loads where <see cref="SmallRowsVector"/> allows, else one element), each row's sum is reduced across the
    /// warp and lane m writes row m. Parameters: y, x (A), w, then bias and C where present. Y is of
    /// <paramref name="outputType"/> where given: float32 over float16 operands for a product that is a graph's float32
    /// output (a classifier's logits), so its sums are written as they are and no conversion pass follows.
    /// </summary>
    public static KernelCode SmallRows(ElementType type, bool bias, bool residual, bool relu, long m, long n, long k, long lda, long ldw, float alpha, float beta, ElementType? outputType = null)
    {
        var output = outputType ?? type;
        if (type is not (ElementType.Float or ElementType.Float16) || m < 1 || m > SmallRowsMax || n < 1 || k < 1 || lda < k || ldw < k
            || (output != type && !(type == ElementType.Float16 && output == ElementType.Float && !residual)))
        {
            throw new ArgumentException($"SmallRows: {type} M {m} N {n} K {k} lda {lda} ldw {ldw}, output {output}{(residual ? " with C" : string.Empty)}");
        }

        var t = CType(type);
        var ot = CType(output);
        var vector = SmallRowsVector(type, k, lda, ldw);
        var w = new KernelWriter(KernelWriter.Fits32(Math.Max(((m - 1) * lda) + k, ((n - 1) * ldw) + k)) && KernelWriter.Fits32((m * n) + (n * 32L)));
        var ix = w.Idx;
        var rows = w.I32("rows", (int)m);
        var cols = w.Size("cols", n);
        var depth = w.Size("depth", k);
        var aPitch = w.Size("lda", lda);
        var wPitch = w.Size("ldw", ldw);
        var scale = w.Float("alpha", alpha);
        var v = KernelWriter.Lit(vector);
        var max = KernelWriter.Lit(SmallRowsMax);
        var load = vector == 1
            ? $$"""
                for ({{ix}} j = lane; j < {{depth}}; j += 32) {
                    const float wv = (float)wr[j];
                    #pragma unroll
                    for (int r = 0; r < {{max}}; r++) if (r < {{rows}}) acc[r] += (float)x[r * {{aPitch}} + j] * wv;
                }
            """
            : $$"""
                #pragma unroll 4
                for ({{ix}} j = lane * {{v}}; j < {{depth}}; j += 32 * {{v}}) {
                    const uint4 wq = *(const uint4*)(wr + j);
                    const {{t}}* we = (const {{t}}*)&wq;
                    #pragma unroll
                    for (int r = 0; r < {{max}}; r++) if (r < {{rows}}) {
                        const uint4 aq = *(const uint4*)(x + r * {{aPitch}} + j);
                        const {{t}}* ae = (const {{t}}*)&aq;
                        float s = acc[r];
                        #pragma unroll
                        for (int u = 0; u < {{v}}; u++) s += (float)ae[u] * (float)we[u];
                        acc[r] = s;
                    }
                }
            """;
        var value = $"{scale} * s";
        if (residual)
        {
            value = $"{value} + {w.Float("beta", beta)} * (float)c[r * {cols} + col]";
        }

        if (bias)
        {
            value = $"({value}) + (float)bias[col]";
        }

        w.Body.Append($$"""
                const unsigned lane = threadIdx.x & 31;
                const {{ix}} col = (({{ix}})blockIdx.x * blockDim.x + threadIdx.x) >> 5;
                if (col >= {{cols}}) return;
                const {{t}}* wr = w + col * {{wPitch}};
                float acc[{{max}}];
                #pragma unroll
                for (int r = 0; r < {{max}}; r++) acc[r] = 0.f;
            {{load}}
                #pragma unroll
                for (int r = 0; r < {{max}}; r++) {
                    if (r < {{rows}}) {
                        const float s = bw_warp_sum(acc[r]);
                        if (lane == (unsigned)r) {
                            float z = {{value}};
                            {{(relu ? "z = fmaxf(z, 0.f);" : string.Empty)}}
                            y[r * {{cols}} + col] = ({{ot}})z;
                        }
                    }
                }

            """);
        var signature = $"{ot}* __restrict__ y, const {t}* __restrict__ x, const {t}* __restrict__ w, "
            + (bias ? $"const {t}* __restrict__ bias, " : string.Empty)
            + (residual ? $"const {t}* __restrict__ c, " : string.Empty)
            + KernelWriter.ArgsParameter;
        return w.Build(signature);
    }

    /// <summary>Threads to launch <see cref="SmallRows"/> with: a warp per output column, in whole blocks.</summary>
    public static long SmallRowsThreads(long n) => (n * 32 + SmallRowsBlock - 1) / SmallRowsBlock * SmallRowsBlock;
}
