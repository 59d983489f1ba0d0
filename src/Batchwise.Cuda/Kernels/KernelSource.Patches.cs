using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>Patch extraction for convolutions whose window equals their stride (ViT's and Swin's patch embeddings).</summary>
internal static partial class KernelSource
{
    /// <summary>
    /// Writes A [N * OH * OW, kh * kw * C] with A[(n, oy, ox), (i, j, c)] = x[n, c, oy * kh + i, ox * kw + j]: each row one
    /// non-overlapping patch, so the convolution is one GEMM of A with the filter as [K, kh, kw, C]. The input is
    /// channels-last [N, H, W, <paramref name="storedChannels"/>] (its first C channels read) or channels-first [N, C, H, W];
    /// patches past a border that does not divide are never read (the output size is floored).
    /// </summary>
    public static KernelCode Patches(ElementType type, bool channelsLast, long batch, long channels, long storedChannels, long[] inSpatial, long[] outSpatial, long[] kernel)
    {
        var t = MoveType(type.SizeOf());
        var rows = batch * outSpatial[0] * outSpatial[1];
        var cols = kernel[0] * kernel[1] * channels;
        var w = new KernelWriter(KernelWriter.Fits32(rows * cols) && KernelWriter.Fits32(batch * storedChannels * inSpatial[0] * inSpatial[1]));
        var ix = w.Idx;
        var b = w.Body;
        var n = w.Size("n", rows * cols);
        var c = w.Div("c", channels);
        var kw = w.Div("kw", kernel[1]);
        var kh = w.Div("kh", kernel[0]);
        var ow = w.Div("ow", outSpatial[1]);
        var oh = w.Div("oh", outSpatial[0]);
        var ih = w.Size("ih", inSpatial[0]);
        var iw = w.Size("iw", inSpatial[1]);
        var cs = w.Size("cs", storedChannels);
        var ch = w.Size("ch", channels);
        b.Append("    const ").Append(ix).Append(" i = (").Append(ix).Append(")blockIdx.x * blockDim.x + threadIdx.x;\n");
        b.Append("    if (i >= ").Append(n).Append(") return;\n");
        b.Append("    ").Append(ix).Append(" r_ = i;\n");
        b.Append("    ").Append(w.Peel(c, "r_", "cc")).Append('\n');
        b.Append("    ").Append(w.Peel(kw, "r_", "kj")).Append('\n');
        b.Append("    ").Append(w.Peel(kh, "r_", "ki")).Append('\n');
        b.Append("    ").Append(w.Peel(ow, "r_", "ox")).Append('\n');
        b.Append("    ").Append(w.Peel(oh, "r_", "oy")).Append('\n');
        b.Append("    const ").Append(ix).Append(" yy = oy * ").Append(w.DivValue(kh)).Append(" + ki, xx = ox * ").Append(w.DivValue(kw)).Append(" + kj;\n");
        b.Append(channelsLast
            ? $"    y[i] = x[((r_ * {ih} + yy) * {iw} + xx) * {cs} + cc];\n"
            : $"    y[i] = x[((r_ * {ch} + cc) * {ih} + yy) * {iw} + xx];\n");
        return w.Build($"{t}* __restrict__ y, const {t}* __restrict__ x, {KernelWriter.ArgsParameter}");
    }
}
