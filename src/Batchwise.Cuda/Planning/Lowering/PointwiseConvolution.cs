namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a pointwise (1x1, stride 1, unpadded, one group) convolution in channels-last half precision.</summary>
internal enum PointwiseConvChoice
{
    /// <summary>
    /// cuBLASLt wherever the convolution is a plain GEMM (the default). Measured on an H200 (session 9,
    /// Gpu/PointwiseConvGpuTests, ResNet-50's nine pointwise shapes at batches 1, 64 and 256): within 0.95-1.02x of cuDNN's
    /// fused call everywhere but the 64 -> 256 expansion with its residual at 56 x 56, where it is 1.80x at batch 256
    /// (0.261 against 0.470 ms); ResNet-50 fp16 2,836 / 32,150 / 37,860 img/s at b=1/64/256 against 2,768 / 31,584 / 33,699
    /// with cuDNN (same run).
    /// </summary>
    Gemm,

    /// <summary>cuDNN always.</summary>
    Cudnn,
}

/// <summary>
/// Pointwise convolutions in channels-last half precision as one cuBLASLt GEMM: the input [N, H, W, C] is the matrix
/// [N * H * W, C] as it is stored, the filter [K, C, 1, 1] is [K, C], and the product [N * H * W, K] is the output
/// channels-last as it stands. The bias, a residual Add (as C, beta 1) and a ReLU after it go into cuBLASLt's epilogue,
/// as cuDNN's fused call takes them. cuDNN's fused call ran ResNet-50's 64 -> 256 expansions at 56 x 56 with their
/// residual at 0.475-0.672 ms at batch 256 on an H200 (about 2 TB/s of the ~0.93 GB each moves), where the same
/// convolutions at 28 x 28 ran at the memory roofline.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>BATCHWISE_POINTWISE_CONV: gemm (default; auto says the same) or cudnn.</summary>
    internal static PointwiseConvChoice PointwiseConvFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_POINTWISE_CONV")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" or "gemm" => PointwiseConvChoice.Gemm,
        "cudnn" => PointwiseConvChoice.Cudnn,
        var other => throw new BatchwiseException($"BATCHWISE_POINTWISE_CONV '{other}' is not auto, gemm or cudnn", "Unset it (cuBLASLt), or set BATCHWISE_POINTWISE_CONV=cudnn for cuDNN's fused call."),
    };

    /// <summary>
    /// Lowers a pointwise convolution with a constant filter in half precision to one cuBLASLt GEMM and returns true, or
    /// returns false (nothing emitted, nothing folded) when the choice, the precision, the window or the layout leave it
    /// to cuDNN. <paramref name="outName"/> becomes the last fused node's output.
    /// </summary>
    private bool TryLowerPointwise(PlanValue x, PlanValue w, PlanValue? b, ref string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] padsEnd)
    {
        if (_target.PointwiseConvolutions == PointwiseConvChoice.Cudnn || !Half || x.Shape.Length != 4 || groups != 1 || w.Constant is null || w.Shape.Length != 4
            || kernel.Any(k => k != 1) || strides.Any(s => s != 1) || dilations.Any(d => d != 1) || padsBegin.Concat(padsEnd).Any(p => p != 0)
            || !PreferNhwc(x.Shape) || x.PaddedChannels > 0)
        {
            return false;
        }

        var (c, k) = (x.Shape[1], w.Shape[0]);
        var rows = x.Shape[0] * x.Shape[2] * x.Shape[3];
        if (rows > int.MaxValue || c % 8 != 0 || k % 8 != 0 || c > int.MaxValue || k > int.MaxValue)
        {
            return false; // the GEMM's sizes are 32-bit; tensor cores want both channel counts in eights
        }

        var (relu, residual) = ConvEpilogue(ref outName, yShape);
        FoldResidualBias(ref residual, ref b);
        x = Nhwc(x);
        residual = residual is null ? null : Nhwc(residual);
        var y = Output(outName, x.Type, yShape, nhwc: true);
        var f = w.Constant;
        var filter = new PlanValue(w.Type, [k, c], _target.Derive($"pointwise-filter:{k}x{c}", [f], () => f.WithShape([k, c])));
        EmitMatmul(x, filter, y, (int)rows, (int)k, (int)c, false, true, c, c, 1, 0, 0, 1, residual is null ? 0 : 1, b, residual, relu: relu);
        return true;
    }
}
