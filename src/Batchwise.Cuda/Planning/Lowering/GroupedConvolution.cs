using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a grouped convolution (1 &lt; groups &lt; channels) in half precision.</summary>
internal enum GroupedConvChoice
{
    /// <summary>The own kernel where the group width argues for it (<see cref="GraphCompiler.PrefersOwnGroupedConv"/>), cuDNN elsewhere.</summary>
    Auto,

    /// <summary>The own kernel wherever it can run the convolution.</summary>
    Own,

    /// <summary>cuDNN always.</summary>
    Cudnn,
}

/// <summary>
/// Grouped convolutions (1 &lt; groups &lt; channels, 2-d, constant filter) in channels-last half precision through the
/// engine's own tensor-core kernel (<see cref="KernelSource.GroupedConv"/>) rather than cuDNN, whose kernels for RegNet's
/// group width of 24 ran at 6.5 TFLOP/s on an H200 (0.2-0.64 ms a layer at b=64, about half of RegNetY-016's time).
/// With a ReLU after it (and a residual Add before that) the bias, the add and the ReLU are the kernel's epilogue;
/// otherwise the bias starts an elementwise chain that the activation after it joins.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>BATCHWISE_GROUPED_CONV: auto (default), own or cudnn.</summary>
    internal static GroupedConvChoice GroupedConvFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_GROUPED_CONV")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => GroupedConvChoice.Auto,
        "own" => GroupedConvChoice.Own,
        "cudnn" => GroupedConvChoice.Cudnn,
        var other => throw new BatchwiseException($"BATCHWISE_GROUPED_CONV '{other}' is not auto, own or cudnn", "Unset it (the own kernel for group widths it is chosen for, cuDNN for the rest), or set BATCHWISE_GROUPED_CONV=own or cudnn to force one."),
    };

    /// <summary>
    /// The group widths the own kernel takes by default: input and output widths from 24 to 64 that are not powers of two.
    /// RegNet's 24 is the case it was written for (cuDNN at 6.5 TFLOP/s where the layer's traffic allows ~100); at the
    /// power-of-two widths of ResNeXt (4 to 32) cuDNN's grouped kernels are the ones that run ResNeXt-50 at 1.98x
    /// PyTorch, so they stay until measured (BATCHWISE_GROUPED_CONV=own forces the own kernel for widths 8 to 64).
    /// </summary>
    internal static bool PrefersOwnGroupedConv(long groupIn, long groupOut) =>
        groupIn is >= 24 and <= KernelSource.GroupedConvMaxWidth && groupOut is >= 24 and <= KernelSource.GroupedConvMaxWidth
        && !IsPowerOfTwo(groupIn) && !IsPowerOfTwo(groupOut);

    private static bool IsPowerOfTwo(long v) => v > 0 && (v & (v - 1)) == 0;

    /// <summary>
    /// Lowers a 2-d grouped convolution with a constant filter in half precision to the own kernel and returns true, or
    /// returns false (nothing emitted, nothing folded) when the choice, the precision, the layout or the group widths
    /// leave it to cuDNN. <paramref name="outName"/> becomes the last fused node's output.
    /// </summary>
    private bool TryLowerGroupedConv(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial)
    {
        var choice = _target.GroupedConvolutions;
        var c = x.Shape[1];
        if (choice == GroupedConvChoice.Cudnn || x.Shape.Length != 4 || w.Constant is null || groups <= 1 || groups >= c || c % groups != 0 || w.Shape[0] % groups != 0
            || !PreferNhwc(x.Shape) || St(x) != ElementType.Float16 || x.PaddedChannels > 0)
        {
            return false;
        }

        var (groupIn, groupOut) = (c / groups, w.Shape[0] / groups);
        if (w.Shape[1] != groupIn || (choice == GroupedConvChoice.Auto && !PrefersOwnGroupedConv(groupIn, groupOut))
            || KernelSource.GroupedConvTilesPerWarp(groupIn, groupOut, kernel, strides, dilations, outSpatial[0]) is not { } tiles
            || x.Shape.Concat(yShape).Concat(padsBegin).Any(v => v > int.MaxValue / 4))
        {
            return false;
        }

        x = Nhwc(x);
        var filter = new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant, w.Shape)); // [K, kh, kw, C/G]
        var (relu, residual) = ConvEpilogue(ref outName, yShape);
        if (residual is not null)
        {
            residual = Nhwc(residual);
        }

        var raw = relu || b is null ? Output(outName, x.Type, yShape, nhwc: true) : Temp(x.Type, yShape, nhwc: true);
        var fusedBias = relu ? b : null;
        var epilogue = new GroupedConvEpilogue(fusedBias is null ? null : St(fusedBias), relu, residual is not null);
        var n = x.Shape[0];
        var code = KernelSource.GroupedConv((int)groupIn, (int)groupOut, kernel, strides, dilations, tiles, epilogue, n, groups, x.Shape[2..], outSpatial, padsBegin);
        _node += $" (own grouped kernel, group width {groupIn})";
        Emit(new KernelStep(_node, code, KernelSource.GroupedConvThreads(n, groups, outSpatial, tiles), KernelSource.GroupedConvBlock, [Dev(raw), Dev(x), Dev(filter), fusedBias is null ? -1 : Dev(fusedBias), residual is null ? -1 : Dev(residual)]));
        if (!relu && b is not null)
        {
            var bias = View(b, [b.Count, 1, 1]);
            _values[outName] = Pending([raw, bias], _ => "x0 + x1", raw.Type, yShape);
        }

        return true;
    }
}
