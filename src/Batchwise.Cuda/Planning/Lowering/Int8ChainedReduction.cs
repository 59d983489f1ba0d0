using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A residual block's int8 1x1 end computing the next block's 1x1 reduction in the same kernel
/// (<see cref="KernelSource.Int8ChainPointwise"/>): the reduction reads the block end's output from shared memory.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// BATCHWISE_INT8_CHAIN: on (the default since session 34) computes the next block's 1x1 reduction (ResNet's 256 -> 64
    /// after a 56x56 block end) inside the block end's warp-tiled pointwise kernel where both filters fit in shared memory
    /// beside sixteen warps' tiles (<see cref="KernelSource.Int8ChainPointwiseLeastWarps"/>); any takes it down to eight
    /// warps (measured slower there, kept to measure); off runs the reduction as its own kernel, reading the block end's
    /// output back. Measured on an H100 (session 34, ResNet-50 int8 symmetric at b=256, with
    /// BATCHWISE_INT8_POINTWISE_WARPS=16): 63,645-64,556 img/s against 61,875-62,552; alone 62,856.
    /// </summary>
    internal static int Int8ChainLeastWarpsFromEnvironment => ParseInt8Chain(Environment.GetEnvironmentVariable("BATCHWISE_INT8_CHAIN"));

    /// <summary>on (or unset): sixteen warps; any: eight; off: 0 (no chain); a BatchwiseException for anything else.</summary>
    internal static int ParseInt8Chain(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "on" => KernelSource.Int8ChainPointwiseLeastWarps,
        "any" => KernelSource.Int8ChainPointwiseFewestWarps,
        "off" => 0,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_CHAIN '{other}' is not on, any or off", "Unset it (the next block's 1x1 reduction computed inside the block end's kernel where sixteen warps fit), or set BATCHWISE_INT8_CHAIN=any (down to eight warps) or off (the reduction as its own kernel)."),
    };

    /// <summary>The next block's 1x1 reduction as a block end's kernel computes it: its layer and QuantizeLinear, output channels and shape, the block's warps, its filter, scales and offsets as the kernel reads them, its requantization and stored shift.</summary>
    private sealed record Int8ChainedReduction(Int8Layer Layer, OnnxProto.NodeProto Quantize, long Channels, long[] Shape, int Warps, PlanValue Filter, PlanValue Scale, PlanValue Offset, Int8ConvEpilogue Epilogue, int Shift);

    /// <summary>
    /// The 1x1 reduction that reads the block end's output (<paramref name="blockQ"/>'s, stored less
    /// <paramref name="blockShift"/>, shape <paramref name="yShape"/>) and that the chained kernel can compute with it: the
    /// only int8 convolution among its readers that is one (a projection shortcut reading it too reads it from memory), unstrided, unpadded, one group, 64 or 128 output channels, its QuantizeLinear
    /// and any ReLU its own (no residual, clamp, SiLU or nodes between), a constant bias, and both filters within the
    /// block's shared memory beside the target's least warps' tiles; null otherwise (or with BATCHWISE_INT8_CHAIN off).
    /// </summary>
    private Int8ChainedReduction? FindChainedReduction(OnnxProto.NodeProto blockQ, int blockShift, long[] yShape, long c, long projectionChannels)
    {
        if (_target.Int8ChainLeastWarps == 0 || !_target.Int8PointwiseWarps || !_consumers.TryGetValue(blockQ.Output[0], out var readers))
        {
            return null;
        }

        _int8Layers ??= FindInt8Layers();
        var found = readers.Where(r => r.OpType == "DequantizeLinear" && r.Domain.Length == 0)
            .SelectMany(dq => _consumers.TryGetValue(dq.Output[0], out var users) ? users : [])
            .Where(n => n.OpType == "Conv")
            .Select(n => ChainableReduction(_int8Layers.GetValueOrDefault(n), blockQ, yShape[1], c))
            .OfType<ChainCandidate>()
            .ToList();
        if (found is not [var (layer, w, wScale, bias, x, y)])
        {
            return null;
        }

        var (q, k2) = (layer.Quantize!, w.Shape[0]);
        var warps = KernelSource.Int8ChainPointwiseWarps(c, yShape[1], k2, _target.Int8PointwiseStages, _target.MaxSharedBytesPerBlock, projectionChannels, _target.Int8ChainLeastWarps);
        if (warps == 0)
        {
            return null;
        }

        // Its constants as LowerOwnInt8Conv makes them: the input's zero point as stored (the block end's bytes).
        var (xs, ys) = ((float)x.Scale, (float)y.Scale);
        var zero = x.Zero - blockShift;
        var shift = StoredShift(y.Type);
        var storedYZero = y.Zero - shift;
        long[] spatial = [yShape[2], yShape[3]], one = [1, 1], unpadded = [0, 0];
        var recipe = Int8ConvRecipe(xs, zero, ys, storedYZero, spatial, one, unpadded);
        var (filter, _, offset, _, alpha, _) = Int8ConvConstants(recipe, w, wScale, bias, xs, zero, ys, storedYZero, spatial, spatial, one, one, unpadded);
        return new Int8ChainedReduction(layer, q, k2, [yShape[0], k2, yShape[2], yShape[3]], warps, filter, alpha, OwnOffsets(recipe, w, wScale, bias, offset), new Int8ConvEpilogue(y.Type, y.Zero, layer.Relu is not null), shift);
    }

    /// <summary>
    /// <paramref name="layer"/> with its filter, scales, bias and its input's and output's quantization where it is a
    /// reduction the chained kernel can compute after the block end <paramref name="blockQ"/> (<paramref name="k"/>
    /// channels from <paramref name="c"/>): see <see cref="FindChainedReduction"/>.
    /// </summary>
    private ChainCandidate? ChainableReduction(Int8Layer? layer, OnnxProto.NodeProto blockQ, long k, long c)
    {
        if (layer is not { Int8: true, IsGemm: false, Depthwise: false, Clamp: null, Between: null, Quantize: { } q, InputDequantize: { } xdq, WeightDequantize: { } wdq }
            || xdq.Input[0] != blockQ.Output[0] || (layer.Relu is null && !OnlyConvolutionsRead(q)) || _values.GetValueOrDefault(wdq.Input[0])?.Constant is not { Shape: [var k2, var kc, 1, 1] } w || kc != k
            || !KernelSource.Int8ChainPointwiseTakes(c, k, k2) || _values.GetValueOrDefault(wdq.Input[1])?.Constant is not { } wScale)
        {
            return null;
        }

        var attrs = new NodeAttributes(layer.Node);
        if (attrs.Int("group", 1) != 1 || (attrs.Ints("strides") ?? [1, 1]).Any(s => s != 1) || (attrs.Ints("pads") ?? [0, 0, 0, 0]).Any(p => p != 0) || (attrs.Ints("dilations") ?? [1, 1]).Any(d => d != 1))
        {
            return null;
        }

        HostTensor? bias = null;
        if (layer.Node.Input.Count > 2 && layer.Node.Input[2].Length > 0 && (bias = _values.GetValueOrDefault(layer.Node.Input[2])?.Constant) is null)
        {
            return null;
        }

        if (QdqPerTensor(xdq, _values.GetValueOrDefault) is not { Scale: > 0 } x || QdqPerTensor(q, _values.GetValueOrDefault) is not { Scale: > 0, Type: ElementType.UInt8 or ElementType.Int8 } y
            || (q.Attribute.Any(a => a.Name == "output_dtype") && q.Input.Count < 3) || !float.IsFinite((float)x.Scale) || !float.IsFinite((float)y.Scale))
        {
            return null;
        }

        return new ChainCandidate(layer, w, wScale, bias, x, y);
    }

    /// <summary>
    /// Whether only convolutions read <paramref name="q"/>'s output (through DequantizeLinear nodes; a graph output aside): a reduction without a
    /// ReLU of its own (a model whose QuantizeLinear's zero point is the ReLU's floor, as ONNX Runtime's quantizer writes
    /// it) that ends no residual block and feeds no SiLU, whose fusions the chained kernel does not make.
    /// </summary>
    private bool OnlyConvolutionsRead(OnnxProto.NodeProto q) =>
        _consumers.TryGetValue(q.Output[0], out var readers)
        && readers.All(r => r.OpType == "DequantizeLinear" && _consumers.TryGetValue(r.Output[0], out var users) && users.All(u => u.OpType == "Conv"));

    /// <summary>A reduction the chained kernel can compute: its layer, filter, scales, bias, and its input's and output's quantization.</summary>
    private sealed record ChainCandidate(Int8Layer Layer, HostTensor W, HostTensor WScale, HostTensor? Bias, (double Scale, double Zero, ElementType Type) X, (double Scale, double Zero, ElementType Type) Y);

    /// <summary>
    /// Emits a block end (its layer, QuantizeLinear <paramref name="q"/>, residual fusion and constants as
    /// LowerOwnInt8Conv planned them) and <paramref name="chain"/> as one chained kernel, publishes both outputs, and
    /// returns how the block end runs.
    /// </summary>
    private string EmitChainedBlockEnd(Int8ChainedReduction chain, Int8Layer layer, Int8ResidualFusion fusion, OnnxProto.NodeProto q, PlanValue y, long[] yShape, int outShift, PlanValue input, PlanValue filter, PlanValue alpha, PlanValue offsets, Int8ConvEpilogue epilogue, Int8DeferredShortcut? projection, long c, long pixels, string fused)
    {
        var (k, stages) = (yShape[1], _target.Int8PointwiseStages);
        var blocks = KernelSource.Int8ChainPointwiseBlocks(pixels, chain.Warps, _target.Multiprocessors);
        var shortcut = projection is null ? null : new Int8PointwiseProjection(projection.Channels, projection.Epilogue);
        var code = KernelSource.Int8ChainPointwise(c, k, chain.Channels, pixels, blocks, chain.Warps, epilogue, chain.Epilogue, stages, shortcut);
        var z = NewValue(ElementType.Int8, chain.Shape, true, "int8 activation " + chain.Quantize.Output[0]);
        var inside = projection is null ? string.Empty : ", its projection shortcut computed in it";
        var how = $"int8 (own pointwise kernel, warp tiles, {blocks} persistent blocks of {chain.Warps} warps, {stages} tiles in flight a warp{fused}{inside}, the next 1x1 {NodeLabel(chain.Layer.Node)} computed in it)";
        int[] shortcutBuffers = projection is null ? [] : [projection.Input, projection.Filter, projection.Scale, projection.Offset];
        if (projection is not null)
        {
            _deferredSteps.Remove(fusion.Residual.Int8.Buffer);
        }

        var label = _node;
        _node += $" ({how})";
        Emit(new KernelStep(_node, code, blocks * chain.Warps * 32, chain.Warps * 32,
            [y.Buffer, Dev(input), Dev(filter), Dev(alpha), Dev(offsets), projection is null ? Dev(fusion.Residual.Int8) : -1, .. shortcutBuffers, z.Buffer, Dev(chain.Filter), Dev(chain.Scale), Dev(chain.Offset)]));
        PublishInt8Conv(q, layer.Relu, [.. layer.Between ?? [], .. fusion.Folded], y, yShape, outShift);
        PublishInt8Conv(chain.Quantize, chain.Layer.Relu, [chain.Layer.Node], z, chain.Shape, chain.Shift);
        Int8Decisions[NodeLabel(chain.Layer.Node)] = $"int8 (computed in {label}'s kernel)";
        return how;
    }
}
