using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>The two small kernels around cuDNN's fused attention (BATCHWISE_ATTENTION=cudnn): its additive bias and the rows a mask empties.</summary>
internal static partial class KernelSource
{
    /// <summary>Threads a block of <see cref="AttentionZeroMaskedBatches"/>: one block a batch item.</summary>
    public const int AttentionZeroThreads = 256;

    /// <summary>
    /// y[b * keys + j] = the additive bias of key j of batch item b, in half: the mask's element at (b, j) (strides
    /// <paramref name="batchStride"/>, <paramref name="keyStride"/> from element <paramref name="offset"/>), a boolean
    /// one as <paramref name="select"/>'s (when true, when false), any other as it is. Launch over batch x keys threads.
    /// </summary>
    public static KernelCode AttentionBias(ElementType maskType, long batch, long keys, long batchStride, long keyStride, long offset, (double WhenTrue, double WhenFalse)? select)
    {
        var w = new KernelWriter(KernelWriter.Fits32(batch * keys));
        var ix = w.Idx;
        var n = w.Size("n", batch * keys);
        var k = w.Size("keys", keys);
        var (bs, ks, off) = (w.I64("bs", batchStride), w.I64("ks", keyStride), w.I64("off", offset));
        var b = w.Body;
        b.Append("    const ").Append(ix).Append(" v = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (v >= ").Append(n).Append(") return;\n");
        b.Append("    const i64 at = ").Append(off).Append(" + (i64)(v / ").Append(k).Append(") * ").Append(bs).Append(" + (i64)(v % ").Append(k).Append(") * ").Append(ks).Append(";\n");
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
    /// Zeroes O's [rows, heads, headDim] slice of every batch item whose bias (<see cref="AttentionBias"/>'s, [batch,
    /// keys]) is -inf at every key: the rows torch's "safe softmax" tail Where(IsNaN(p), 0, p) makes zeros, where cuDNN's
    /// softmax gives NaN. O's (batch, head, row) strides in elements, its columns contiguous. One block of
    /// <see cref="AttentionZeroThreads"/> a batch item.
    /// </summary>
    public static KernelCode AttentionZeroMaskedBatches(long keys, long heads, long rows, long headDim, long[] outStrides)
    {
        var w = new KernelWriter(false);
        var (k, h, r, d) = (w.I64("keys", keys), w.I64("heads", heads), w.I64("rows", rows), w.I64("dim", headDim));
        var (ob, oh, or) = (w.I64("ob", outStrides[0]), w.I64("oh", outStrides[1]), w.I64("orow", outStrides[2]));
        var ninf = w.Float("ninf", double.NegativeInfinity);
        var b = w.Body;
        b.Append("    __shared__ int live;\n");
        b.Append("    const i64 item = blockIdx.x;\n");
        b.Append("    if (threadIdx.x == 0) live = 0;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    for (i64 j = threadIdx.x; j < ").Append(k).Append("; j += blockDim.x)\n");
        b.Append("        if ((float)bias[item * ").Append(k).Append(" + j] > ").Append(ninf).Append(") live = 1;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    if (live) return;\n");
        b.Append("    const i64 n = ").Append(h).Append(" * ").Append(r).Append(" * ").Append(d).Append(";\n");
        b.Append("    for (i64 e = threadIdx.x; e < n; e += blockDim.x)\n    {\n");
        b.Append("        const i64 c = e % ").Append(d).Append(", hr = e / ").Append(d).Append(";\n");
        b.Append("        o[item * ").Append(ob).Append(" + (hr / ").Append(r).Append(") * ").Append(oh).Append(" + (hr % ").Append(r).Append(") * ").Append(or).Append(" + c] = (bw_half)0.0f;\n");
        b.Append("    }\n");
        return w.Build($"bw_half* __restrict__ o, const bw_half* __restrict__ bias, {KernelWriter.ArgsParameter}");
    }
}
