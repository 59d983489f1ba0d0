using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs dense convolutions whose output is a few tiles (a 3x3 layer at batch 1) in half precision.</summary>
internal enum SplitKConvChoice
{
    /// <summary>The own split-K kernel for windows of more than one tap where its splits fill the device (<see cref="SplitKShape"/>).</summary>
    Auto,

    /// <summary>As <see cref="Auto"/>, and 1x1 (pointwise) convolutions too, which otherwise run as one cuBLASLt GEMM.</summary>
    All,

    /// <summary>
    /// As <see cref="All"/>, and unsplit where a split does not pay but the grid is at most two waves (batch 1): every
    /// such convolution a generated kernel, so programmatic dependent launch (BATCHWISE_PDL=on) overlaps every boundary.
    /// </summary>
    Every,

    /// <summary>cuDNN always.</summary>
    Off,
}

/// <summary>The split-K kernel's shape: the most and fewest splits of a tile and the most pipeline stages.</summary>
/// <param name="MostSplits">A cluster's most blocks (8 portable; 16 on sm_90 with the function's non-portable attribute).</param>
/// <param name="FewestSplits">The fewest splits worth the kernel: the unsplit grid fills at most 1/FewestSplits of the device.</param>
/// <param name="Stages">The most cp.async stages.</param>
internal sealed record SplitKShape(int MostSplits, int FewestSplits, int Stages)
{
    /// <summary>
    /// 8 splits at most and at least (ResNet-50 fp16 on an H200 in one run, session 21 call 3: b=1 3,148 img/s against
    /// 2,988 with cuDNN, b=8 unchanged; with 2 splits allowed, layers 1 and 2 at b=1 lost 9-14% to cuDNN and b=8 8%;
    /// 16 splits or 16 stages moved nothing past the noise), 8 stages.
    /// </summary>
    public static SplitKShape Default { get; } = new(KernelSource.PortableClusterSize, 8, KernelSource.SplitKStages);
}

/// <summary>
/// Dense convolutions (one group, 2-d, constant filter, more than one tap) in channels-last half precision whose output
/// is too small to fill the device (ResNet-50's 7x7 and 14x14 layers at batch 1 are 8 to 16 tiles of 64 x 64 for 132
/// SMs; cuDNN ran them on 8 to 16 blocks at 12-15 us each) through the own split-K kernel (<see cref="KernelSource.SplitKConv"/>):
/// the reduction is shared by the 8 blocks of a thread-block cluster per tile (sm_90 and later; by default only where 8
/// splits fill the device), which sum their partial tiles through distributed shared memory. The bias, a residual Add and the ReLU after it are its epilogue, as
/// the grouped kernel's.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>BATCHWISE_SPLITK_CONV: auto (default), all, every or off.</summary>
    internal static SplitKConvChoice SplitKConvFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_SPLITK_CONV")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => SplitKConvChoice.Auto,
        "all" => SplitKConvChoice.All,
        "every" => SplitKConvChoice.Every,
        "off" or "cudnn" => SplitKConvChoice.Off,
        var other => throw new BatchwiseException($"BATCHWISE_SPLITK_CONV '{other}' is not auto, all, every or off", "Unset it (the own split-K kernel for convolutions too small to fill the GPU), set BATCHWISE_SPLITK_CONV=all to take 1x1 convolutions there too, every to take also those of at most two waves unsplit, or off for cuDNN and cuBLASLt everywhere."),
    };

    /// <summary>
    /// The split-K kernel's shape from BATCHWISE_SPLITK_MAX_SPLITS (the most splits of a tile, a cluster's blocks: 2 to
    /// 16, more than 8 on sm_90's non-portable clusters), BATCHWISE_SPLITK_MIN_SPLITS (the fewest worth the kernel) and
    /// BATCHWISE_SPLITK_STAGES (the most cp.async stages); unset, <see cref="SplitKShape.Default"/>.
    /// </summary>
    internal static SplitKShape SplitKShapeFromEnvironment => new(
        EnvironmentSetting.Int("BATCHWISE_SPLITK_MAX_SPLITS", SplitKShape.Default.MostSplits, 2, KernelSource.SplitKMaxSplits),
        EnvironmentSetting.Int("BATCHWISE_SPLITK_MIN_SPLITS", SplitKShape.Default.FewestSplits, 2, KernelSource.SplitKMaxSplits),
        EnvironmentSetting.Int("BATCHWISE_SPLITK_STAGES", SplitKShape.Default.Stages, 2, KernelSource.SplitKMaxStages));

    /// <summary>
    /// Lowers a dense convolution too small to fill the device to the own split-K kernel and returns true, or returns
    /// false (nothing emitted) where the choice, precision, layout, channel counts or size leave it to the others.
    /// </summary>
    private bool TryLowerSplitKConv(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial)
    {
        if (_target.SplitKConvolutions == SplitKConvChoice.Off || !Half || _target.ComputeCapability < 90 || x.Shape.Length != 4 || groups != 1 || w.Constant is null || w.Shape.Length != 4
            || (kernel[0] * kernel[1] < 2 && _target.SplitKConvolutions is not (SplitKConvChoice.All or SplitKConvChoice.Every)) || x.Shape[1] % KernelSource.SplitKConvChunk != 0 || w.Shape[0] % KernelSource.SplitKConvTile != 0
            || w.Shape[1] != x.Shape[1] || x.PaddedChannels > 0 || !PreferNhwc(x.Shape) || St(x) != ElementType.Float16
            || x.Shape.Concat(yShape).Concat(padsBegin).Any(v => v > int.MaxValue / 4) || x.Count > int.MaxValue / 2 || w.Count > int.MaxValue / 2)
        {
            return false;
        }

        var (n, c, k) = (x.Shape[0], x.Shape[1], w.Shape[0]);
        var pixels = n * outSpatial[0] * outSpatial[1];
        var chunks = kernel[0] * kernel[1] * (c / KernelSource.SplitKConvChunk);
        var shape = _target.SplitKConvShape;
        if (KernelSource.SplitKConvSplits(pixels, k, chunks, _target.Multiprocessors, shape.MostSplits, shape.FewestSplits) is not var (splits, perSplit))
        {
            var tiles = (pixels + KernelSource.SplitKConvTile - 1) / KernelSource.SplitKConvTile * (k / KernelSource.SplitKConvTile);
            if (_target.SplitKConvolutions != SplitKConvChoice.Every || tiles > 2L * _target.Multiprocessors || chunks > int.MaxValue)
            {
                return false;
            }

            (splits, perSplit) = (1, (int)chunks);
        }

        var stages = KernelSource.SplitKConvStages(perSplit, shape.Stages);
        if (KernelSource.SplitKConvSharedBytes(stages) > _target.MaxSharedBytesPerBlock)
        {
            return false;
        }

        x = Nhwc(x);
        var filter = new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)); // [K, kh, kw, C]
        var (raw, bias, residual, epilogue) = OwnConvOutput(x, b, ref outName, yShape);
        var code = KernelSource.SplitKConv(c, kernel, strides, dilations, epilogue, n, k, x.Shape[2..], outSpatial, padsBegin, splits, perSplit, stages);
        _node += splits > 1 ? $" (own split-K kernel, {splits} splits)" : " (own split-K kernel, unsplit)";
        Emit(new KernelStep(_node, code, KernelSource.SplitKConvThreads(pixels, k, splits), KernelSource.SplitKConvBlock, [Dev(raw), Dev(x), Dev(filter), bias is null ? -1 : Dev(bias), residual is null ? -1 : Dev(residual)]));
        return true;
    }
}
