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

        // Under auto the own kernel keeps to static shared memory (what was measured); forced, it may use the device's opt-in limit.
        var (groupIn, groupOut) = (c / groups, w.Shape[0] / groups);
        var maxShared = choice == GroupedConvChoice.Own ? _target.MaxSharedBytesPerBlock : KernelCache.StaticSharedBytes;
        if (w.Shape[1] != groupIn || (choice == GroupedConvChoice.Auto && !PrefersOwnGroupedConv(groupIn, groupOut))
            || KernelSource.GroupedConvTilesPerWarp(groupIn, groupOut, kernel, strides, dilations, outSpatial[0], maxShared) is not { } tiles
            || x.Shape.Concat(yShape).Concat(padsBegin).Any(v => v > int.MaxValue / 4))
        {
            return false;
        }

        EmitOwnConv(Nhwc(x), w, b, outName, yShape, kernel, strides, dilations, groups, padsBegin, outSpatial, tiles, false, $" (own grouped kernel, group width {groupIn})");
        return true;
    }

    /// <summary>
    /// Emits <see cref="KernelSource.GroupedConv"/> for channels-last <paramref name="x"/> (its stored channels are the
    /// convolution's) and the constant filter <paramref name="w"/> [K, C/G, kh, kw], with the bias and, after the
    /// convolution, the ReLU (and a residual Add before it) as its epilogue. The step's
    /// name is the node's with <paramref name="label"/> added; <paramref name="byParity"/> stores the input tile's columns
    /// by parity (stride 2 across).
    /// </summary>
    private void EmitOwnConv(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial, int tiles, bool byParity, string label)
    {
        var (groupIn, groupOut) = (x.Shape[1] / groups, w.Shape[0] / groups);
        var filter = new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)); // [K, kh, kw, C/G]
        var (raw, fusedBias, residual, epilogue) = OwnConvOutput(x, b, ref outName, yShape);
        var n = x.Shape[0];
        var code = KernelSource.GroupedConv((int)groupIn, (int)groupOut, kernel, strides, dilations, tiles, epilogue, n, groups, x.Shape[2..], outSpatial, padsBegin, byParity);
        _node += label;
        Emit(new KernelStep(_node, code, KernelSource.GroupedConvThreads(n, groups, outSpatial, tiles), KernelSource.GroupedConvBlock, [Dev(raw), Dev(x), Dev(filter), fusedBias is null ? -1 : Dev(fusedBias), residual is null ? -1 : Dev(residual)]));
    }

    /// <summary>
    /// Where an own convolution kernel writes and what its epilogue does: with a ReLU after the convolution (and a
    /// residual Add before that) the bias, the residual and the ReLU, the kernel writing the last fused node's output
    /// (<paramref name="outName"/> becomes its name). Read only by elementwise nodes (SiLU's Sigmoid and Mul, a
    /// hard-swish), the kernel writes the raw sum and the bias joins their chain, as after a cuDNN convolution: the chain
    /// is then the same kernel whichever runs the convolution, so a plan whose batch size moves a layer between cuDNN and
    /// an own kernel (the split-K kernel fills the device only at small batches) compiles no new chain. Otherwise the
    /// bias is the kernel's too.
    /// </summary>
    private (PlanValue Raw, PlanValue? Bias, PlanValue? Residual, GroupedConvEpilogue Epilogue) OwnConvOutput(PlanValue x, PlanValue? b, ref string outName, long[] yShape)
    {
        var (relu, residual) = ConvEpilogue(ref outName, yShape);
        if (residual is not null)
        {
            residual = Nhwc(residual);
        }

        var name = outName;
        if (!relu && residual is null && b is not null && ReadByElementwiseOnly(name))
        {
            var rawOnly = Temp(x.Type, yShape, nhwc: true);
            _values[name] = RawPlusBias(rawOnly, b, yShape);
            return (rawOnly, null, null, new GroupedConvEpilogue(null, false, false));
        }

        var raw = Output(outName, x.Type, yShape, nhwc: true);
        return (raw, b, residual, new GroupedConvEpilogue(b is null ? null : St(b), relu, residual is not null));
    }

    /// <summary>
    /// Whether <paramref name="name"/> is no graph output and every node reading it is an elementwise one (a pending chain
    /// joins them) other than an Add or Sum, which a residual block end or a shortcut set aside for it takes biased.
    /// </summary>
    private bool ReadByElementwiseOnly(string name) =>
        !_graphOutputs.Contains(name) && _consumers.TryGetValue(name, out var users) && users.Count > 0
        && users.All(u => u.Domain is "" or "ai.onnx" && ElementwiseOps.Operators.Contains(u.OpType) && u.OpType is not ("BatchNormalization" or "Add" or "Sum"));

    /// <summary>
    /// Lowers a convolution over fewer than 8 input channels (a stem: ResNet's 7x7 stride 2 on 3 channels; constant
    /// filter, one group, half precision, 8 to 64 output channels in eights) under BATCHWISE_STEM_CONV=own to the own
    /// kernel as one group of 8 channels, the input and filter padded with zero channels (a network input already is,
    /// as it entered), and returns true; or returns false (nothing emitted) when it leaves the convolution to the others.
    /// The filter (64 x 7 x 7 x 8 halves, 51 KB) takes the kernel's dynamic shared memory; at stride 2 across, the input
    /// tile's columns are stored by parity (conflict-free ldmatrix at 8 channels).
    /// </summary>
    private bool TryLowerStemOwn(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] kernel, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial)
    {
        const long Padded = 8;
        if (_target.StemConvolutions != StemConvChoice.Own || !Half || x.Shape.Length != 4 || groups != 1 || w.Constant is null || w.Shape.Length != 4
            || x.Shape[1] >= Padded || x.PaddedChannels is not (0 or Padded) || !PreferNhwc(x.Shape) || outSpatial.Any(o => o < 1)
            || KernelSource.GroupedConvTilesPerWarp(Padded, w.Shape[0], kernel, strides, dilations, outSpatial[0], _target.MaxSharedBytesPerBlock, byParity: strides.Length == 2 && strides[1] == 2) is not { } tiles
            || x.Shape.Concat(yShape).Concat(padsBegin).Any(v => v > int.MaxValue / 4))
        {
            return false;
        }

        var c = x.Shape[1];
        if (x.PaddedChannels == Padded)
        {
            // The network input, padded with zero channels when it entered: only the filter needs them too.
            w = PadFilter(w, Padded);
            x = new PlanValue(x.Type, [x.Shape[0], Padded, x.Shape[2], x.Shape[3]], null, x.Buffer) { Nhwc = true };
        }
        else
        {
            (x, w) = PadChannels(Nhwc(x), w, Padded);
        }

        EmitOwnConv(x, w, b, outName, yShape, kernel, strides, dilations, 1, padsBegin, outSpatial, tiles, strides[1] == 2, $" (own conv kernel, {c} channels padded to {Padded})");
        return true;
    }
}
