using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>The small kernels around cuDNN's fused attention (Planning/Lowering/CudnnAttention.cs): its additive bias, the rows a mask empties, and a padding mask's sequence lengths.</summary>
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
    /// A bias at or below this drops its key exactly as -inf does (exp of it underflows to 0 against any kept key's score
    /// short of a 9,900 lead), so a mask of 0s and such values is a set of kept keys (<see cref="AttentionSequenceLengths"/>).
    /// </summary>
    public const double AttentionDropBias = -10000;

    /// <summary>
    /// A per-key padding mask as cuDNN's sequence lengths, one block of <see cref="AttentionZeroThreads"/> a batch item:
    /// int32 y[0..batch) = <paramref name="rows"/> (every query kept), y[batch + b] = the item's key count where its mask
    /// keeps keys 0..n-1 (n &gt; 0) and drops the others, else 0; y[2 batch + b] = 0 for such an item and 1 for any other
    /// (keys kept out of order, none kept, or a bias neither 0 nor at most <see cref="AttentionDropBias"/>): those items
    /// the own attention kernel computes after cuDNN (its <c>onlyFlagged</c> form). The mask is read as
    /// <see cref="AttentionBias"/> reads a row (strides, offset, a boolean's two values).
    /// </summary>
    public static KernelCode AttentionSequenceLengths(ElementType maskType, long batch, long rows, long keys, long batchStride, long keyStride, long offset, (double WhenTrue, double WhenFalse)? select)
    {
        var w = new KernelWriter(false);
        var (n, k, r) = (w.I64("batch", batch), w.I64("keys", keys), w.I64("rows", rows));
        var (bs, ks, off) = (w.I64("bs", batchStride), w.I64("ks", keyStride), w.I64("off", offset));
        var drop = w.Float("drop", AttentionDropBias);
        var b = w.Body;
        b.Append("    __shared__ int counts[").Append(AttentionZeroThreads).Append("], firsts[").Append(AttentionZeroThreads).Append("], others[").Append(AttentionZeroThreads).Append("];\n");
        b.Append("    const i64 item = blockIdx.x;\n");
        b.Append("    int count = 0, first = (int)").Append(k).Append(", other = 0;\n");
        b.Append("    for (i64 j = threadIdx.x; j < ").Append(k).Append("; j += blockDim.x)\n    {\n");
        b.Append("        const i64 at = ").Append(off).Append(" + item * ").Append(bs).Append(" + j * ").Append(ks).Append(";\n");
        if (select is var (whenTrue, whenFalse))
        {
            var (t, f) = (w.Float("t", whenTrue), w.Float("f", whenFalse));
            b.Append("        const float bias = m[at] ? ").Append(t).Append(" : ").Append(f).Append(";\n");
        }
        else
        {
            b.Append("        const float bias = (float)m[at];\n");
        }

        b.Append("        if (bias == 0.f) count++;\n");
        b.Append("        else if (bias <= ").Append(drop).Append(") { if ((int)j < first) first = (int)j; }\n");
        b.Append("        else other = 1;\n");
        b.Append("    }\n");
        b.Append("    counts[threadIdx.x] = count; firsts[threadIdx.x] = first; others[threadIdx.x] = other;\n");
        b.Append("    __syncthreads();\n");
        b.Append("    if (threadIdx.x == 0)\n    {\n");
        b.Append("        int kept = 0, first_drop = (int)").Append(k).Append(", odd = 0;\n");
        b.Append("        for (int i = 0; i < ").Append(AttentionZeroThreads).Append("; i++) { kept += counts[i]; first_drop = firsts[i] < first_drop ? firsts[i] : first_drop; odd |= others[i]; }\n");
        b.Append("        const bool prefix = !odd && kept > 0 && kept == first_drop;\n");
        b.Append("        y[item] = (int)").Append(r).Append(";\n");
        b.Append("        y[").Append(n).Append(" + item] = prefix ? kept : 0;\n");
        b.Append("        y[2 * ").Append(n).Append(" + item] = prefix ? 0 : 1;\n");
        b.Append("    }\n");
        return w.Build($"int* __restrict__ y, const {CType(maskType)}* __restrict__ m, {KernelWriter.ArgsParameter}");
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
