using Batchwise.Cuda.Kernels;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a convolution over fewer than 8 input channels (a network's stem) in half precision.</summary>
internal enum StemConvChoice
{
    /// <summary>cuDNN over the input padded to 8 channels (1.23 ms for ResNet-50's stem at b=256 on an H200).</summary>
    Cudnn,

    /// <summary>Patches (im2col) times the filter in one cuBLASLt GEMM (measured slower than cuDNN on an H200: 1.97 ms against 1.23 ms at b=256).</summary>
    Gemm,

    /// <summary>
    /// The own tensor-core kernel (<see cref="KernelSource.GroupedConv"/> as one group of 8 padded channels, up to 64
    /// output channels, bias + ReLU fused): the default, measured on an H200 at 0.60 ms against cuDNN's 1.23 ms for
    /// ResNet-50's stem at b=256 (StemConvGpuTests), ResNet-50 fp16 39,648 against 36,835 img/s at b=256 in one run.
    /// </summary>
    Own,
}

/// <summary>
/// Patch-embedding convolutions (window == stride, no padding or dilation, one group: ViT's 16 x 16 stride 16 on 3
/// channels) in half precision as one GEMM: the patches laid out as rows [N * OH * OW, kh * kw * C] by one copy, times
/// the filter as [K, kh * kw * C]; the product [N * OH * OW, K] is the output channels-last as it stands. cuDNN ran this
/// 3-channel convolution far from the GEMM rate on an H200 (0.28 ms at batch 64).
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// BATCHWISE_STEM_CONV: own (default), cudnn or gemm — a convolution over fewer than 8 input channels (a network's
    /// stem: ResNet's 7x7 stride 2 on 3 channels) through cuDNN over the input padded to 8 channels (1.23 ms of
    /// ResNet-50's 7.7 ms at batch 256 on an H200, ~25 TFLOP/s); gemm: as patches (im2col, the window's values padded to
    /// a multiple of 8 columns) times the filter in one cuBLASLt GEMM with the bias, a residual and a ReLU in its
    /// epilogue; own: the own tensor-core convolution kernel over the padded channels with the bias, a residual and the
    /// ReLU in its epilogue (the default: 2.05x cuDNN at b=256 on an H200). A convolution the own kernel does not take
    /// (more than 64 output channels, a filter past the shared memory) goes to cuDNN.
    /// </summary>
    internal static StemConvChoice StemConvFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_STEM_CONV")?.Trim().ToLowerInvariant() switch
    {
        "cudnn" => StemConvChoice.Cudnn,
        "gemm" => StemConvChoice.Gemm,
        null or "" or "own" => StemConvChoice.Own,
        var other => throw new BatchwiseException($"BATCHWISE_STEM_CONV '{other}' is not cudnn, gemm or own", "Unset it (the own tensor-core kernel), or set BATCHWISE_STEM_CONV=cudnn (cuDNN over channels padded to 8) or gemm (patches times the filter in one GEMM) for convolutions over fewer than 8 channels."),
    };

    /// <summary>
    /// Lowers a convolution over fewer than 8 input channels (constant filter, half precision, one group) as patches times
    /// the filter in one GEMM and returns true, or returns false (nothing emitted, nothing folded).
    /// </summary>
    private bool TryLowerStemAsGemm(PlanValue x, PlanValue w, PlanValue? b, ref string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial)
    {
        if (_target.StemConvolutions != StemConvChoice.Gemm || !Half || x.Shape.Length != 4 || groups != 1 || w.Constant is null || w.Shape.Length != 4 || x.Shape[1] >= 8
            || !kernel.SequenceEqual(w.Shape[2..]) || kernel.All(k => k == 1) || outSpatial.Any(o => o < 1))
        {
            return false;
        }

        var (n, c, k) = (x.Shape[0], x.Shape[1], w.Shape[0]);
        var rows = n * outSpatial[0] * outSpatial[1];
        var cols = kernel[0] * kernel[1] * c;
        var padded = (cols + 7) / 8 * 8;
        if (rows > int.MaxValue || padded > int.MaxValue || k > int.MaxValue || k % 8 != 0)
        {
            return false;
        }

        var (relu, residual) = ConvEpilogue(ref outName, yShape);
        var (patches, filter) = PatchesAndFilter(x, w, outSpatial, kernel, strides, dilations, padsBegin, padded);
        residual = residual is null ? null : Nhwc(residual);
        var y = Output(outName, x.Type, yShape, nhwc: true);
        EmitMatmul(patches, filter, y, (int)rows, (int)k, (int)padded, false, true, padded, padded, 1, 0, 0, 1, residual is null ? 0 : 1, b, residual, relu: relu);
        return true;
    }

    /// <summary>Lowers a patch-embedding convolution with a constant filter and returns true, or returns false (nothing emitted).</summary>
    private bool TryLowerPatches(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] padsEnd, long[] outSpatial)
    {
        if (!Half || x.Shape.Length != 4 || groups != 1 || w.Constant is null || w.Shape.Length != 4 || !kernel.SequenceEqual(w.Shape[2..])
            || !kernel.SequenceEqual(strides) || dilations.Any(d => d != 1) || padsBegin.Concat(padsEnd).Any(p => p != 0) || kernel.All(k => k == 1)
            || outSpatial.Any(o => o < 1))
        {
            return false;
        }

        var (n, c, k) = (x.Shape[0], x.Shape[1], w.Shape[0]);
        var rows = n * outSpatial[0] * outSpatial[1];
        var cols = kernel[0] * kernel[1] * c;
        if (rows > int.MaxValue || cols > int.MaxValue || k > int.MaxValue || k % 8 != 0)
        {
            return false; // the GEMM's sizes are 32-bit; tensor cores want the output channels in eights
        }

        var (patches, filter) = PatchesAndFilter(x, w, outSpatial, kernel, strides, dilations, padsBegin, cols);
        var raw = b is null ? Output(outName, x.Type, yShape, nhwc: true) : Temp(x.Type, yShape, nhwc: true);
        EmitMatmul(patches, filter, raw, (int)rows, (int)k, (int)cols, false, true, cols, cols, 1, 0, 0, 1, 0);
        if (b is not null)
        {
            var bias = View(b, [b.Count, 1, 1]);
            _values[outName] = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        }

        return true;
    }

    /// <summary>
    /// The patches of <paramref name="x"/> (im2col: a row [N * OH * OW] per output pixel, its window's values in [kh, kw, C]
    /// order, zero outside the image and from kh * kw * C up to <paramref name="columns"/>) and the constant filter [K, C,
    /// kh, kw] as [K, columns] rows in the same order (zero columns past kh * kw * C): their product is the convolution's
    /// output channels-last. The input is read as stored: channels-last (a network input padded with zero channels reads
    /// its first C), else NCHW.
    /// </summary>
    private (PlanValue Patches, PlanValue Filter) PatchesAndFilter(PlanValue x, PlanValue w, long[] outSpatial, long[] kernel, long[] strides, long[] dilations, long[] padsBegin, long columns)
    {
        var (n, c, k) = (x.Shape[0], x.Shape[1], w.Shape[0]);
        var rows = n * outSpatial[0] * outSpatial[1];
        var cols = kernel[0] * kernel[1] * c;
        x = Materialize(x);
        var stored = x.Nhwc ? Math.Max(c, x.PaddedChannels) : c;
        var patches = Temp(x.Type, [rows, columns]);
        Kernel(KernelSource.Patches(St(x), x.Nhwc, n, c, stored, x.Shape[2..], outSpatial, kernel, strides, dilations, padsBegin, columns), rows * columns, Dev(patches), Dev(x));
        var f = w.Constant!;
        var s4 = w.Shape;
        var filter = new PlanValue(w.Type, [k, columns], _target.Derive(columns == cols ? $"patch-filter:{k}x{cols}" : $"patch-filter:{k}x{cols}:{columns}", [f], () =>
        {
            var rowsFirst = ChannelsLast(f, s4);
            return columns == cols
                ? rowsFirst.WithShape([k, cols])
                : HostTensor.Create(rowsFirst.Type, [k, columns], i => i % columns < cols ? rowsFirst[(i / columns * cols) + (i % columns)] : 0);
        }));
        return (patches, filter);
    }
}
