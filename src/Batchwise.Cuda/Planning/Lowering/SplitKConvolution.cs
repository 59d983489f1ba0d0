using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

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
    /// BATCHWISE_SPLITK_PROJECTION: on computes a residual block's 1x1 projection shortcut in its block end's split-K
    /// kernel, the two products in one accumulator (one kernel and the shortcut's output fewer: ResNet-50 at batch 1 has
    /// four); off (default until measured) runs the shortcut as its own kernel.
    /// </summary>
    internal static bool SplitKProjectionsFromEnvironment => ParseSplitKProjection(Environment.GetEnvironmentVariable("BATCHWISE_SPLITK_PROJECTION"));

    /// <summary>off (or unset): false; on: true; a BatchwiseException for anything else.</summary>
    internal static bool ParseSplitKProjection(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "off" => false,
        "on" => true,
        var other => throw new BatchwiseException($"BATCHWISE_SPLITK_PROJECTION '{other}' is not on or off", "Unset it (projection shortcuts as their own kernels) or set BATCHWISE_SPLITK_PROJECTION=on (computed in their block end's split-K kernel)."),
    };

    /// <summary>A half-precision projection shortcut's kernel as planned, and what its block end's split-K kernel needs to compute it instead: the input, the filter [K, C2], the bias and the stride.</summary>
    private sealed record SplitKDeferredShortcut(KernelStep Step, PlanValue Input, PlanValue Filter, PlanValue? Bias, long Stride) : DeferredStep(Step);

    /// <summary>The split-K kernel's (splits, steps a split) for a problem, or null where neither a split pays nor (under <see cref="SplitKConvChoice.Every"/>) the grid is at most two waves.</summary>
    private (int Splits, int PerSplit)? SplitKPlan(long pixels, long k, long chunks)
    {
        var shape = _target.SplitKConvShape;
        if (KernelSource.SplitKConvSplits(pixels, k, chunks, _target.Multiprocessors, shape.MostSplits, shape.FewestSplits) is { } split)
        {
            return split;
        }

        var tiles = (pixels + KernelSource.SplitKConvTile - 1) / KernelSource.SplitKConvTile * (k / KernelSource.SplitKConvTile);
        return _target.SplitKConvolutions != SplitKConvChoice.Every || tiles > 2L * _target.Multiprocessors || chunks > int.MaxValue ? null : (1, (int)chunks);
    }

    /// <summary>
    /// Whether the other side of a residual block will take this 1x1 convolution (output <paramref name="outName"/>,
    /// <paramref name="k"/> output channels, <paramref name="channels"/> input channels) into its split-K kernel: its
    /// output read only by an Add followed by a ReLU, the Add's other side a dense constant-filter convolution (a
    /// BatchNormalization after it folds) not planned yet, whose output only the Add reads, with channels the split-K
    /// kernel takes and a split-K plan for both reductions together. Whichever of the two comes first in the plan is
    /// set aside: a projection shortcut planned before the block's last convolution, or (torchvision's order for the
    /// strided blocks) the block's last 1x1 convolution planned before its shortcut, which then computes both.
    /// </summary>
    private bool ShortcutTaken(string outName, long channels, long k, long[] yShape)
    {
        if (!_target.SplitKProjections || _target.SplitKConvolutions is not (SplitKConvChoice.All or SplitKConvChoice.Every) || BlockAdd(outName) is not { } add)
        {
            return false;
        }

        var other = add.Input[0] == outName ? add.Input[1] : add.Input[0];
        var producer = Producer(other);
        if (producer is { OpType: "BatchNormalization" } bn && SoleConsumer(bn.Input[0]) == bn)
        {
            producer = Producer(bn.Input[0]);
        }

        if (producer is not { OpType: "Conv" } end || _values.ContainsKey(other) || SoleConsumer(other) != add || _values.GetValueOrDefault(end.Input[1])?.Constant is not { Shape: [var k2, var c2, var kh, var kw] } || k2 != k)
        {
            return false;
        }

        var plan = c2 % KernelSource.SplitKConvChunk == 0 && new NodeAttributes(end).Int("group", 1) == 1
            ? SplitKPlan(yShape[0] * yShape[2] * yShape[3], k, ((kh * kw * c2) + channels) / KernelSource.SplitKConvChunk)
            : null;
        return plan is { } p && KernelSource.SplitKConvSharedBytes(KernelSource.SplitKConvStages(p.PerSplit, _target.SplitKConvShape.Stages)) <= _target.MaxSharedBytesPerBlock;
    }

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

        // A projection shortcut set aside for this block end (its residual): its reduction joins this one.
        var shortcut = ShortcutFor(outName, yShape);
        if (shortcut is not null)
        {
            chunks += shortcut.Filter.Shape[1] / KernelSource.SplitKConvChunk;
        }

        if (SplitKPlan(pixels, k, chunks) is not var (splits, perSplit))
        {
            return false;
        }

        var stages = KernelSource.SplitKConvStages(perSplit, _target.SplitKConvShape.Stages);
        if (KernelSource.SplitKConvSharedBytes(stages) > _target.MaxSharedBytesPerBlock)
        {
            return false;
        }

        x = Nhwc(x);
        var filter = new PlanValue(w.Type, w.Shape, ChannelsLastConstant(w.Constant!, w.Shape)); // [K, kh, kw, C]
        var (raw, bias, residual, epilogue) = OwnConvOutput(x, b, ref outName, yShape);
        if (shortcut is not null && residual is not null && _deferredSteps.Remove(residual.Buffer))
        {
            // The block's Add and ReLU are this kernel's; the shortcut's sum is in its accumulator, its bias in the bias.
            var sum = bias?.Constant is { } b1 && shortcut.Bias?.Constant is { } b2
                ? _target.Derive("splitk-shortcut-bias", [b1, b2], () => HostTensor.OfFloats(ElementType.Float, [k], [.. Enumerable.Range(0, (int)k).Select(i => (double)(float)(b1[i] + b2[i]))]))
                : (bias?.Constant ?? shortcut.Bias?.Constant);
            var joined = sum is null ? null : new PlanValue(ElementType.Float, [k], sum);
            var shortcutInput = shortcut.Input;
            var code2 = KernelSource.SplitKConv(c, kernel, strides, dilations, new GroupedConvEpilogue(joined is null ? null : St(joined), epilogue.Relu, false), n, k, x.Shape[2..], outSpatial, padsBegin, splits, perSplit, stages,
                new SplitKShortcut(shortcutInput.Shape[1], shortcut.Stride, shortcutInput.Shape[2..]));
            _node += (splits > 1 ? $" (own split-K kernel, {splits} splits" : " (own split-K kernel, unsplit") + ", its projection shortcut computed in it)";
            Emit(new KernelStep(_node, code2, KernelSource.SplitKConvThreads(pixels, k, splits), KernelSource.SplitKConvBlock, [Dev(raw), Dev(x), Dev(filter), joined is null ? -1 : Dev(joined), -1, Dev(shortcutInput), Dev(shortcut.Filter)]));
            return true;
        }

        var code = KernelSource.SplitKConv(c, kernel, strides, dilations, epilogue, n, k, x.Shape[2..], outSpatial, padsBegin, splits, perSplit, stages);
        _node += splits > 1 ? $" (own split-K kernel, {splits} splits)" : " (own split-K kernel, unsplit)";
        int[] buffers = [Dev(raw), Dev(x), Dev(filter), bias is null ? -1 : Dev(bias), residual is null ? -1 : Dev(residual)];
        if (kernel.All(v => v == 1) && padsBegin.All(v => v == 0) && !epilogue.Relu && residual is null && ShortcutTaken(outName, c, k, yShape))
        {
            // A projection shortcut: set aside for its block end's split-K kernel, which computes it (or emitted as
            // planned where a step reads its output first).
            _node += ", set aside for its block end's kernel";
            _deferredSteps[raw.Buffer] = new SplitKDeferredShortcut(new KernelStep(_node, code, KernelSource.SplitKConvThreads(pixels, k, splits), KernelSource.SplitKConvBlock, buffers), x, filter, bias, strides[0] == strides[1] ? strides[0] : -1);
            return true;
        }

        Emit(new KernelStep(_node, code, KernelSource.SplitKConvThreads(pixels, k, splits), KernelSource.SplitKConvBlock, buffers));
        return true;
    }

    /// <summary>
    /// The residual block's Add that alone reads <paramref name="outName"/>, of two distinct inputs, followed by a ReLU
    /// that alone reads it, as ConvEpilogue finds the block end it fuses; null otherwise (SoleConsumer leaves graph
    /// outputs out).
    /// </summary>
    private OnnxProto.NodeProto? BlockAdd(string outName) =>
        SoleConsumer(outName) is { OpType: "Add", Input.Count: 2 } add && add.Input[0] != add.Input[1] && SoleConsumer(add.Output[0]) is { OpType: "Relu" } ? add : null;

    /// <summary>The shortcut set aside for the block end whose output is <paramref name="outName"/> (the other side of the Add after it), or null.</summary>
    private SplitKDeferredShortcut? ShortcutFor(string outName, long[] yShape)
    {
        if (_deferredSteps.Count == 0 || BlockAdd(outName) is not { } add)
        {
            return null;
        }

        var other = add.Input[0] == outName ? add.Input[1] : add.Input[0];
        return _values.TryGetValue(other, out var z) && z.Shape.SequenceEqual(yShape) && _deferredSteps.GetValueOrDefault(z.Buffer) is SplitKDeferredShortcut { Stride: > 0 } s ? s : null;
    }
}
