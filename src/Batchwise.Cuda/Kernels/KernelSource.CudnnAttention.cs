using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>The two small kernels around cuDNN's fused attention (Planning/Lowering/CudnnAttention.cs): its additive bias and the rows a mask empties.</summary>
internal static partial class KernelSource
{
    /// <summary>Threads a block of <see cref="AttentionZeroMaskedRows"/>: one block a bias row.</summary>
    public const int AttentionZeroThreads = 256;

    /// <summary>
    /// y[(b * rows + r) * keys + j] = the additive bias of key j for query row r of batch item b, in half: the mask's
    /// element at (b, r, j) (strides <paramref name="batchStride"/>, <paramref name="rowStride"/>, <paramref name="keyStride"/>
    /// from element <paramref name="offset"/>; <paramref name="rows"/> 1 for a mask alike for every query), a boolean one
    /// as <paramref name="select"/>'s (when true, when false), any other as it is. Launch over batch x rows x keys threads.
    /// </summary>
    public static KernelCode AttentionBias(ElementType maskType, long batch, long rows, long keys, long batchStride, long rowStride, long keyStride, long offset, (double WhenTrue, double WhenFalse)? select)
    {
        var w = new KernelWriter(KernelWriter.Fits32(batch * rows * keys));
        var ix = w.Idx;
        var n = w.Size("n", batch * rows * keys);
        var (k, r) = (w.Size("keys", keys), w.Size("rows", rows));
        var (bs, rs, ks, off) = (w.I64("bs", batchStride), w.I64("rs", rowStride), w.I64("ks", keyStride), w.I64("off", offset));
        var b = w.Body;
        b.Append("    const ").Append(ix).Append(" v = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (v >= ").Append(n).Append(") return;\n");
        b.Append("    const ").Append(ix).Append(" br = v / ").Append(k).Append(";\n");
        b.Append("    const i64 at = ").Append(off).Append(" + (i64)(br / ").Append(r).Append(") * ").Append(bs).Append(" + (i64)(br % ").Append(r).Append(") * ").Append(rs)
            .Append(" + (i64)(v % ").Append(k).Append(") * ").Append(ks).Append(";\n");
        if (select is var (whenTrue, whenFalse))
        {
            var (t, f) = (w.Float("t", whenTrue), w.Float("f", whenFalse));
            b.Append("    y[v] = (bw_half)(float)(m[at] ? ").Append(t).Append(" : ").Append(f).Append(");\n");
        }
        else
        {
            b.Append("    y[v] = (bw_half)(float)m[at];\n");
        }

        return w.Build($"{CType(ElementType.Float16)}* __restrict__ y, const {CType(maskType)}* __restrict__ m, {KernelWriter.ArgsParameter}");
    }

    /// <summary>
    /// Zeroes the output rows whose bias row (<see cref="AttentionBias"/>'s, [batch, biasRows, keys]) is -inf at every key:
    /// the rows torch's "safe softmax" tail Where(IsNaN(p), 0, p) makes zeros, where cuDNN's softmax gives NaN. With one
    /// bias row a batch item (a mask alike for every query) that is the item's whole [rows, heads, headDim] slice; with
    /// one a query, that query's row in every head. O's (batch, head, row) strides in elements, its columns contiguous.
    /// One block of <see cref="AttentionZeroThreads"/> a bias row.
    /// </summary>
    public static KernelCode AttentionZeroMaskedRows(long keys, long heads, long rows, long biasRows, long headDim, long[] outStrides)
    {
        var w = new KernelWriter(false);
        var (k, h, d, br) = (w.I64("keys", keys), w.I64("heads", heads), w.I64("dim", headDim), w.I64("bias_rows", biasRows));
        var covered = w.I64("covered", biasRows > 1 ? 1 : rows);
        var (ob, oh, or) = (w.I64("ob", outStrides[0]), w.I64("oh", outStrides[1]), w.I64("orow", outStrides[2]));
        var ninf = w.Float("ninf", double.NegativeInfinity);
        var b = w.Body;
        b.Append("    __shared__ int live;\n");
        b.Append("    const i64 item = blockIdx.x, batch = item / ").Append(br).Append(", first = ").Append(covered).Append(" == 1 ? item % ").Append(br).Append(" : 0;\n");
        b.Append("    if (threadIdx.x == 0) live = 0;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    for (i64 j = threadIdx.x; j < ").Append(k).Append("; j += blockDim.x)\n");
        b.Append("        if ((float)bias[item * ").Append(k).Append(" + j] > ").Append(ninf).Append(") live = 1;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    if (live) return;\n");
        b.Append("    const i64 n = ").Append(h).Append(" * ").Append(covered).Append(" * ").Append(d).Append(";\n");
        b.Append("    for (i64 e = threadIdx.x; e < n; e += blockDim.x)\n    {\n");
        b.Append("        const i64 c = e % ").Append(d).Append(", hr = e / ").Append(d).Append(";\n");
        b.Append("        o[batch * ").Append(ob).Append(" + (hr / ").Append(covered).Append(") * ").Append(oh).Append(" + (first + hr % ").Append(covered).Append(") * ").Append(or).Append(" + c] = (bw_half)0.0f;\n");
        b.Append("    }\n");
        return w.Build($"bw_half* __restrict__ o, const bw_half* __restrict__ bias, {KernelWriter.ArgsParameter}");
    }
}
