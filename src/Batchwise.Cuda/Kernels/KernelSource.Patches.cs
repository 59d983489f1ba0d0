using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>
/// Patch extraction (im2col) for convolutions run as one GEMM: patch embeddings (window equal to stride) and stems over
/// a few input channels.
/// </summary>
internal static partial class KernelSource
{
    /// <summary>
    /// Writes A [N * OH * OW, P] with A[(n, oy, ox), (i, j, c)] = x[n, c, oy * sh - ph + i * dh, ox * sw - pw + j * dw]
    /// (zero outside the image) for columns below kh * kw * C, and zero in the columns from there up to P
    /// (<paramref name="paddedColumns"/>, kh * kw * C when 0): each row one output pixel's window, so the convolution is
    /// one GEMM of A with the filter as [K, kh, kw, C] (padded to P columns with zeros). Strides default to the window
    /// (non-overlapping patches), dilations to 1, pads to 0. The input is channels-last [N, H, W,
    /// <paramref name="storedChannels"/>] (its first C channels read) or channels-first [N, C, H, W].
    /// </summary>
    public static KernelCode Patches(ElementType type, bool channelsLast, long batch, long channels, long storedChannels, long[] inSpatial, long[] outSpatial, long[] kernel, long[]? strides = null, long[]? dilations = null, long[]? padsBegin = null, long paddedColumns = 0)
    {
        strides ??= kernel;
        dilations ??= [1, 1];
        padsBegin ??= [0, 0];
        var t = MoveType(type.SizeOf());
        var rows = batch * outSpatial[0] * outSpatial[1];
        var cols = kernel[0] * kernel[1] * channels;
        var padded = paddedColumns == 0 ? cols : paddedColumns;
        if (padded < cols)
        {
            throw new ArgumentException("patches: fewer padded columns than the window has values", nameof(paddedColumns));
        }

        var w = new KernelWriter(KernelWriter.Fits32(rows * padded) && KernelWriter.Fits32(batch * storedChannels * inSpatial[0] * inSpatial[1]));
        var ix = w.Idx;
        var b = w.Body;
        var n = w.Size("n", rows * padded);
        var pc = w.Div("pc", padded);
        var c = w.Div("c", channels);
        var kw = w.Div("kw", kernel[1]);
        var ow = w.Div("ow", outSpatial[1]);
        var oh = w.Div("oh", outSpatial[0]);
        var ih = w.Size("ih", inSpatial[0]);
        var iw = w.Size("iw", inSpatial[1]);
        var cs = w.Size("cs", storedChannels);
        var ch = w.Size("ch", channels);
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(n).Append(") return;\n");
        b.Append("    ").Append(ix).Append(" r_ = i;\n");
        b.Append("    ").Append(w.Peel(pc, "r_", "col")).Append('\n');
        if (padded > cols)
        {
            b.Append("    if (col >= ").Append(cols).Append(") { y[i] = 0; return; }\n");
        }

        b.Append("    ").Append(ix).Append(" t_ = col;\n");
        b.Append("    ").Append(w.Peel(c, "t_", "cc")).Append('\n');
        b.Append("    ").Append(w.Peel(kw, "t_", "kj")).Append('\n');
        b.Append("    ").Append(w.Peel(ow, "r_", "ox")).Append('\n');
        b.Append("    ").Append(w.Peel(oh, "r_", "oy")).Append('\n');
        b.Append($"    const long long yy = (long long)oy * {strides[0]} - {padsBegin[0]} + (long long)t_ * {dilations[0]}, xx = (long long)ox * {strides[1]} - {padsBegin[1]} + (long long)kj * {dilations[1]};\n");
        var inside = padsBegin.All(p => p == 0) && strides.SequenceEqual(kernel) && dilations.All(d => d == 1)
            ? string.Empty // non-overlapping patches of a floored output never leave the image
            : $"    if (yy < 0 || yy >= (long long){ih} || xx < 0 || xx >= (long long){iw}) {{ y[i] = 0; return; }}\n";
        b.Append(inside);
        b.Append(channelsLast
            ? $"    y[i] = x[((r_ * {ih} + ({ix})yy) * {iw} + ({ix})xx) * {cs} + cc];\n"
            : $"    y[i] = x[((r_ * {ch} + cc) * {ih} + ({ix})yy) * {iw} + ({ix})xx];\n");
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }
}
