using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The warp tiles of the warp-tiled pointwise int8 kernel for block ends without a projection shortcut or chained
/// reduction inside (BATCHWISE_INT8_POINTWISE_ROWS).
/// </summary>
internal enum Int8WarpTile
{
    /// <summary>16 pixels x 128 channels a warp (<see cref="Kernels.KernelSource.Int8WarpPointwise"/>; the default, as measured since session 33).</summary>
    Sixteen,

    /// <summary>32 pixels a warp, the channel block in two halves (<see cref="Kernels.KernelSource.Int8WarpPointwiseWideTileM"/>): fewer shared memory reads a product, twice a warp's shared memory.</summary>
    ThirtyTwo,

    /// <summary>Two warps share a 32-pixel tile, a channel half each (<see cref="Kernels.KernelSource.Int8PairPointwise"/>): the same reads as ThirtyTwo at 16-pixel tiles' shared memory a warp.</summary>
    Pairs,
}

/// <summary>Who runs an int8 convolution of a QDQ model (<see cref="Int8Layers"/>).</summary>
internal enum Int8ConvChoice
{
    /// <summary>
    /// The own persistent 1x1 kernel (<see cref="KernelSource.Int8Pointwise"/>) for the expanding 1x1 convolutions it
    /// takes (output channels at least twice the input's: ResNet's block ends and projections), the narrow 1x1 kernel for
    /// expansions from 8-64 channels and the depthwise kernel for depthwise layers (since session 31), cuDNN and cuBLASLt
    /// for the rest (the default since session 27, BATCHWISE_INT8_CONV unset or auto). Measured on an H200 (session 27,
    /// calls 2-3, ResNet-50 QDQ at b=256): the kernel ran the 56x56 block ends in 0.200 ms against cuDNN's fused graphs'
    /// 0.334, the 28x28 ends 0.125 against 0.160, the 14x14 ends 0.081 against 0.091, the 64 -> 256 projection 0.124
    /// against 0.189, but the 256 -> 128 reduction (one channel block, eight k32 steps a tile) 0.122 against 0.100.
    /// Again with the warp-tiled kernel (session 35, H100, ResNet-50 symmetric at b=256): every reduction it takes on it
    /// (<see cref="Pointwise"/>) 63,732 and 64,275 img/s against this default's 64,455 and 64,556 (the 64 -> 64 reduction
    /// 0.064 ms against cuDNN's 0.069, the 256 -> 64 0.126 against 0.104).
    /// </summary>
    Auto,

    /// <summary>
    /// cuDNN's routes (graph API, legacy int8) and cuBLASLt only (BATCHWISE_INT8_CONV=library; depthwise layers, which no
    /// library runs in int8, then run in float between their pairs). On an H200 (session 25, ResNet-50 QDQ at
    /// b=256, one call) they ran every convolution faster than the own kernel with any of its tiles: 6.04 ms of layers
    /// against 10.9-11.7 ms; cuDNN's runtime-compiled engines reach ~1,000 int8 TOPS on the 3x3 layers (warpgroup MMA),
    /// the own mma.sync kernel ~470.
    /// </summary>
    Library,

    /// <summary>The own kernel wherever the channel counts allow it (BATCHWISE_INT8_CONV=own).</summary>
    Own,

    /// <summary>
    /// The own persistent kernel (<see cref="KernelSource.Int8Pointwise"/>) for unstrided, unpadded 1x1 convolutions with
    /// 64, 128 or 256 input channels and output channels in 128s, the own narrow kernel
    /// (<see cref="KernelSource.Int8NarrowPointwise"/>, dp4a) for 1x1 expansions from 8 to 64 input channels, the
    /// libraries for the rest (BATCHWISE_INT8_CONV=pointwise).
    /// </summary>
    Pointwise,
}

/// <summary>Which own int8 kernel runs a convolution (<see cref="GraphCompiler"/>'s LowerOwnInt8Conv).</summary>
internal enum OwnInt8Kernel
{
    /// <summary>The implicit GEMM (<see cref="KernelSource.Int8Conv"/>) with a tile.</summary>
    Tiled,

    /// <summary>The persistent tensor-core 1x1 kernel (<see cref="KernelSource.Int8Pointwise"/>).</summary>
    Pointwise,

    /// <summary>The narrow dp4a 1x1 kernel (<see cref="KernelSource.Int8NarrowPointwise"/>).</summary>
    Narrow,

    /// <summary>The depthwise dp4a kernel (<see cref="KernelSource.Int8Depthwise"/>).</summary>
    Depthwise,
}

/// <summary>
/// Int8 convolutions through the own implicit-GEMM kernel (<see cref="KernelSource.Int8Conv"/>): int8 channels-last in
/// and out, int32 sums on tensor cores, the requantization, a ReLU and a residual block's end (its Add, ReLU and
/// QuantizeLinear) in the epilogue. Padding reads the input's stored zero point, so the offsets are per channel and no
/// padded copy of the input is made.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>BATCHWISE_INT8_CONV: auto (default), library, own or pointwise.</summary>
    internal static Int8ConvChoice Int8ConvFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_INT8_CONV")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => Int8ConvChoice.Auto,
        "library" => Int8ConvChoice.Library,
        "own" => Int8ConvChoice.Own,
        "pointwise" => Int8ConvChoice.Pointwise,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_CONV '{other}' is not auto, library, own or pointwise", "Unset it (the own kernels for expanding 1x1 and depthwise convolutions, cuDNN and cuBLASLt elsewhere), or set BATCHWISE_INT8_CONV=library for the libraries only, own for the own int8 kernel wherever the channel counts allow it, or pointwise for the own 1x1 kernels on every 1x1 they take (the narrow one on expansions from 8-64 channels)."),
    };

    /// <summary>BATCHWISE_INT8_GEMM: graph (default) or cublaslt.</summary>
    internal static Int8GemmChoice Int8GemmFromEnvironment => ParseInt8Gemm(Environment.GetEnvironmentVariable("BATCHWISE_INT8_GEMM"));

    /// <summary>graph (or unset) or cublaslt; a BatchwiseException for anything else.</summary>
    internal static Int8GemmChoice ParseInt8Gemm(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "graph" => Int8GemmChoice.Graph,
        "cublaslt" => Int8GemmChoice.Cublaslt,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_GEMM '{other}' is not graph or cublaslt", "Unset it (cuDNN's graph with the dequantization fused), or set BATCHWISE_INT8_GEMM=cublaslt for cuBLASLt's int8 products with int32 sums."),
    };

    /// <summary>The own kernel's pipeline stages at most (a reduction of fewer steps takes one more than its steps).</summary>
    private const int Int8ConvStages = 4;

    /// <summary>BATCHWISE_INT8_CONV_TILE=MxN (128x128, 128x64 or 64x64): the own kernel's tile wherever it divides the output channels, for measuring the tiles against each other; unset, chosen by the grid.</summary>
    internal static (int M, int N)? Int8ConvTileFromEnvironment
    {
        get
        {
            var text = Environment.GetEnvironmentVariable("BATCHWISE_INT8_CONV_TILE")?.Trim();
            if (string.IsNullOrEmpty(text))
            {
                return null;
            }

            foreach (var t in KernelSource.Int8ConvTiles)
            {
                if (text == $"{t.M}x{t.N}")
                {
                    return t;
                }
            }

            throw new BatchwiseException($"BATCHWISE_INT8_CONV_TILE '{text}' is not one of {string.Join(", ", KernelSource.Int8ConvTiles.Select(t => $"{t.M}x{t.N}"))}", "Unset it (the tile chosen by the grid), or give one of those tiles.");
        }
    }

    /// <summary>
    /// The own kernel's tile for a convolution of <paramref name="pixels"/> output pixels, <paramref name="c"/> input and
    /// <paramref name="k"/> output channels under <see cref="Int8ConvChoice.Own"/>: the largest whose grid is two blocks
    /// per SM or more, else the largest with one per SM, else the smallest (BATCHWISE_INT8_CONV_TILE forces one); null
    /// where the choice, the device or the channel counts leave the convolution to the libraries.
    /// </summary>
    internal (int M, int N)? OwnInt8ConvTile(long pixels, long c, long k)
    {
        if (_target.Int8Convolutions != Int8ConvChoice.Own || _target.ComputeCapability < 80 || c % KernelSource.Int8ConvChunk != 0 || pixels > int.MaxValue || k > int.MaxValue)
        {
            return null;
        }

        var fits = KernelSource.Int8ConvTiles.Where(t => k % t.N == 0 && KernelSource.Int8ConvSharedBytes(t.M, t.N, Int8ConvStages) <= _target.MaxSharedBytesPerBlock).ToList();
        if (Int8ConvTileFromEnvironment is { } forced && fits.Contains(forced))
        {
            return forced;
        }

        long Blocks((int M, int N) t) => ((pixels + t.M - 1) / t.M) * (k / t.N);
        foreach (var wave in new[] { 2L, 1L })
        {
            if (fits.Where(t => Blocks(t) >= wave * _target.Multiprocessors).Select(t => ((int, int)?)t).FirstOrDefault() is { } tile)
            {
                return tile;
            }
        }

        return fits.Count > 0 ? fits[^1] : null;
    }

    /// <summary>
    /// BATCHWISE_INT8_POINTWISE_STAGES=2..4: tiles in flight a block of the pointwise kernel (unset: 2, the form measured
    /// in session 26; 3 and 4 are there to be measured against it, with the shared memory they take).
    /// </summary>
    internal static int Int8PointwiseStagesFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_INT8_POINTWISE_STAGES")?.Trim() switch
    {
        null or "" => KernelSource.Int8PointwiseStages,
        "2" => 2,
        "3" => 3,
        "4" => 4,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_POINTWISE_STAGES '{other}' is not 2, 3 or 4", "Unset it (two tiles in flight a block), or give 2, 3 or 4."),
    };

    /// <summary>
    /// BATCHWISE_INT8_POINTWISE_BLOCKS=2..4: resident blocks an SM the pointwise kernel is built for (its launch bounds and
    /// its persistent grid, where shared memory allows; unset: 2, 128 registers a thread), more warps an SM to measure
    /// against it.
    /// </summary>
    internal static int Int8PointwiseResidentBlocksFromEnvironment => EnvironmentSetting.Int("BATCHWISE_INT8_POINTWISE_BLOCKS", KernelSource.Int8PointwiseResidentBlocks, 2, 4);

    /// <summary>BATCHWISE_INT8_POINTWISE_ROWS (<see cref="ParseInt8PointwiseTile"/>).</summary>
    internal static Int8WarpTile Int8PointwiseTileFromEnvironment => ParseInt8PointwiseTile(Environment.GetEnvironmentVariable("BATCHWISE_INT8_POINTWISE_ROWS"));

    /// <summary>
    /// BATCHWISE_INT8_POINTWISE_ROWS: 16 (or unset), 32 or pairs — the warp tiles of the warp-tiled pointwise kernel for
    /// the block ends a projection shortcut or chained reduction does not join (<see cref="Int8WarpTile"/>; 32 and pairs
    /// measured 1.8-2.0% and 0.6-1.0% slower than 16 on ResNet-50 at b=256, H100, session 36); a BatchwiseException for
    /// anything else.
    /// </summary>
    internal static Int8WarpTile ParseInt8PointwiseTile(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "16" => Int8WarpTile.Sixteen,
        "32" => Int8WarpTile.ThirtyTwo,
        "pairs" => Int8WarpTile.Pairs,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_POINTWISE_ROWS '{other}' is not 16, 32 or pairs", "Unset it (16-pixel warp tiles), or set BATCHWISE_INT8_POINTWISE_ROWS=32 (a warp's 32-pixel tiles: fewer shared memory reads a product, fewer warps an SM) or pairs (two warps share a 32-pixel tile, a channel half each)."),
    };

    /// <summary>
    /// BATCHWISE_INT8_POINTWISE_WARPS=8..16: warps a block of the warp-tiled pointwise kernel may have where only one block
    /// of eight fits an SM (256 input channels: ResNet-50's 14x14 block ends, 142 KB, eight warps an SM where the layers of
    /// fewer channels run sixteen), as many as fit up to this; unset, 16 (the default since session 34: on an H100,
    /// ResNet-50 int8 at b=256, the six 14x14 ends with fourteen warps ran 0.082 ms each against 0.091 with eight, the
    /// model 63,230 img/s against 62,040 alone); 8 is session 33's form.
    /// </summary>
    internal static int Int8PointwiseMostWarpsFromEnvironment => EnvironmentSetting.Int("BATCHWISE_INT8_POINTWISE_WARPS", KernelSource.Int8ChainPointwiseMostWarps, 8, 16);

    /// <summary>
    /// Whether a convolution takes the own persistent 1x1 kernel (<see cref="Int8ConvChoice.Pointwise"/>, or
    /// <see cref="Int8ConvChoice.Auto"/> for an expanding one): unstrided and unpadded 1x1, channel counts the kernel
    /// holds, its shared memory within the device's, compute capability 8.0+.
    /// </summary>
    internal bool OwnInt8Pointwise(long[] kernel, long[] strides, long[] pads, long c, long k, long pixels) =>
        (_target.Int8Convolutions == Int8ConvChoice.Pointwise || (_target.Int8Convolutions == Int8ConvChoice.Auto && k >= 2 * c)) && _target.ComputeCapability >= 80 && kernel.All(v => v == 1) && strides.All(v => v == 1) && pads.All(v => v == 0)
            && PointwiseKernelTakes(c, k) && pixels <= int.MaxValue && PointwiseSharedBytes(c) <= _target.MaxSharedBytesPerBlock;

    /// <summary>Shared memory of a block of the pointwise kernel the target asks for (<see cref="IPlanTarget.Int8PointwiseWarps"/>) at <paramref name="c"/> input channels, with a projection shortcut of <paramref name="projectionChannels"/> computed in it (0: none).</summary>
    private int PointwiseSharedBytes(long c, long projectionChannels = 0) => _target.Int8PointwiseWarps
        ? KernelSource.Int8WarpPointwiseSharedBytes(c, _target.Int8PointwiseStages, projectionChannels)
        : projectionChannels == 0 ? KernelSource.Int8PointwiseSharedBytes(c, _target.Int8PointwiseStages) : KernelSource.Int8PointwiseSharedBytes(c, _target.Int8PointwiseStages, projectionChannels);

    /// <summary>
    /// BATCHWISE_INT8_POINTWISE_KERNEL: warp (default since session 33: <see cref="KernelSource.Int8WarpPointwise"/>, every
    /// warp its own tiles, copies and stages, no block-wide barrier after the filter's) or block
    /// (<see cref="KernelSource.Int8Pointwise"/>, a block's eight warps in step through three barriers a tile). Measured on
    /// an H100 (session 33, ResNet-50 int8 symmetric at b=256, one call): 61,765 and 61,504 img/s against the block
    /// kernel's 60,540; with the projection shortcut inside, 62,681 against 61,061 and 60,859.
    /// </summary>
    internal static bool Int8PointwiseWarpsFromEnvironment => ParseInt8PointwiseKernel(Environment.GetEnvironmentVariable("BATCHWISE_INT8_POINTWISE_KERNEL"));

    /// <summary>warp (or unset): true; block: false; a BatchwiseException for anything else.</summary>
    internal static bool ParseInt8PointwiseKernel(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "block" => false,
        null or "" or "warp" => true,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_POINTWISE_KERNEL '{other}' is not block or warp", "Unset it (warp: every warp its own pipeline) or set BATCHWISE_INT8_POINTWISE_KERNEL=block (a block's warps in step)."),
    };

    /// <summary>
    /// BATCHWISE_INT8_WGMMA: on (the default since session 37) runs the warp-tiled pointwise kernel's products on Hopper's
    /// warpgroup MMA (sm_90: <see cref="KernelSource.Int8WarpPointwise"/> with warp groups, the block's warps rounded down
    /// to fours) for the block ends without a projection shortcut or chained reduction inside; off keeps mma.sync there.
    /// Measured on an H100 (session 37, ResNet-50 int8 symmetric at b=256, alternating in one call): 66,406 / 66,483 /
    /// 65,894 img/s against 64,066 / 64,564 (fp16 40,686 / 40,964); the 14x14 ends 0.082 -> 0.064 ms, the 28x28 ends
    /// 0.106 -> 0.100; the same output bytes (Int8PointwiseGpuTests).
    /// </summary>
    internal static bool Int8WarpGroupsFromEnvironment => ParseInt8WarpGroups(Environment.GetEnvironmentVariable("BATCHWISE_INT8_WGMMA"));

    /// <summary>on (or unset): true; off: false; a BatchwiseException for anything else.</summary>
    internal static bool ParseInt8WarpGroups(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "on" => true,
        "off" => false,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_WGMMA '{other}' is not on or off", "Unset it (the int8 pointwise kernel on Hopper's warpgroup MMA where the device has it) or set BATCHWISE_INT8_WGMMA=off (on mma.sync)."),
    };

    /// <summary>
    /// BATCHWISE_INT8_PROJECTION: on (default since session 33) computes a residual block's projection shortcut (an
    /// unstrided 1x1 int8 convolution of the block's input, ResNet-50's first block) inside the block end's pointwise
    /// kernel, so its output (205 MB at b=256 for ResNet-50's) is neither written nor read back; off runs it as its own
    /// kernel. Measured on an H100 (session 33, ResNet-50 int8 symmetric at b=256): 61,467 and 61,385 img/s against
    /// 60,540 with the block kernel; the same output bytes (Int8PointwiseGpuTests).
    /// </summary>
    internal static bool Int8ProjectionsFromEnvironment => ParseInt8Projection(Environment.GetEnvironmentVariable("BATCHWISE_INT8_PROJECTION"));

    /// <summary>on (or unset): true; off: false; a BatchwiseException for anything else.</summary>
    internal static bool ParseInt8Projection(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "off" => false,
        null or "" or "on" => true,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_PROJECTION '{other}' is not on or off", "Unset it (projection shortcuts computed inside their block end's kernel) or set BATCHWISE_INT8_PROJECTION=off (as their own kernels)."),
    };

    /// <summary>An int8 projection shortcut's kernel as planned, and what the block end's kernel needs to compute it instead: its input, filter, scales, offsets, channels and requantization.</summary>
    private sealed record Int8DeferredShortcut(KernelStep Step, int Input, int Filter, int Scale, int Offset, long Channels, Int8ConvEpilogue Epilogue) : DeferredStep(Step);

    /// <summary>
    /// Whether the pointwise layer whose QuantizeLinear is <paramref name="q"/> (<paramref name="c"/> input channels, output
    /// <paramref name="yShape"/>) is a residual block's projection shortcut that the block's end will compute inside its
    /// own pointwise kernel: its output read only by its DequantizeLinear into the block's Add, whose other input is the
    /// DequantizeLinear of an int8 1x1 convolution not planned yet that takes the pointwise kernel with a residual (no
    /// ReLU, clamp or nodes between of its own) and the shortcut's channels within its shared memory.
    /// </summary>
    private bool ProjectionAbsorbed(OnnxProto.NodeProto q, long c, long[] yShape)
    {
        if (!_target.Int8Projections || Int8Layers.ResidualSetting == false || _graphOutputs.Contains(q.Output[0])
            || SoleConsumer(q.Output[0]) is not { OpType: "DequantizeLinear" } dq || SoleConsumer(dq.Output[0]) is not { OpType: "Add", Input.Count: 2 } add || add.Input[0] == add.Input[1])
        {
            return false;
        }

        var other = add.Input[0] == dq.Output[0] ? add.Input[1] : add.Input[0];
        if (Producer(other) is not { OpType: "DequantizeLinear" } odq || Producer(odq.Input[0]) is not { OpType: "QuantizeLinear" } oq || _values.ContainsKey(oq.Output[0]))
        {
            return false;
        }

        _int8Layers ??= FindInt8Layers();
        var end = _int8Layers.Values.FirstOrDefault(l => l.Quantize == oq);
        if (end is not { Int8: true, IsGemm: false, Depthwise: false, Relu: null, Clamp: null, Between: null } || _values.GetValueOrDefault(end.WeightDequantize!.Input[0])?.Constant is not { Shape: [var k, var c7, 1, 1] })
        {
            return false;
        }

        var attrs = new NodeAttributes(end.Node);
        long[] one = [1, 1];
        var strides = attrs.Ints("strides") ?? one;
        var pads = attrs.Ints("pads") ?? [0, 0, 0, 0];
        var pixels = yShape[0] * yShape[2] * yShape[3];
        return k == yShape[1] && attrs.Int("group", 1) == 1 && (attrs.Ints("dilations") ?? one).All(d => d == 1) && OwnInt8Pointwise(one, strides, pads, c7, k, pixels)
            && KernelSource.Int8PointwiseTakes(c, k) && PointwiseSharedBytes(c7, c) <= _target.MaxSharedBytesPerBlock;
    }

    /// <summary>The tensor-core pointwise kernel's channel counts under <see cref="IPlanTarget.Int8PointwiseWide"/>.</summary>
    private bool PointwiseKernelTakes(long c, long k) =>
        KernelSource.Int8PointwiseTakes(c, k) && (_target.Int8PointwiseWide || (c is 64 or 128 or 256 && k % KernelSource.Int8PointwiseTileN == 0));

    /// <summary>
    /// BATCHWISE_INT8_POINTWISE_WIDE: on (default since session 32, not yet measured) lets the pointwise kernel take input
    /// channels 64-256 in 32s and output channels in 64s (a MobileNet's 96 -> 576 and 160 -> 960, whose ReLU6 then folds
    /// into it); off keeps it to 64, 128 or 256 input channels and outputs in 128s, as measured in sessions 26-31.
    /// </summary>
    internal static bool Int8PointwiseWideFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_INT8_POINTWISE_WIDE")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "on" => true,
        "off" => false,
        var other => throw new BatchwiseException($"BATCHWISE_INT8_POINTWISE_WIDE '{other}' is not on or off", "Unset it (the pointwise int8 kernel takes 64-256 input channels in 32s and outputs in 64s) or set BATCHWISE_INT8_POINTWISE_WIDE=off (64, 128 or 256 input channels, outputs in 128s)."),
    };

    /// <summary>
    /// Whether a convolution takes the own narrow 1x1 kernel (<see cref="KernelSource.Int8NarrowPointwise"/>: dp4a, a
    /// pixel a thread) under <see cref="Int8ConvChoice.Auto"/> or <see cref="Int8ConvChoice.Pointwise"/>: an unstrided,
    /// unpadded 1x1 expansion (output channels at least twice the input's) from 8 to 64 input channels that the
    /// tensor-core pointwise kernel does not take (a MobileNet's 16 -> 96, 24 -> 144, 32 -> 192). The default since
    /// session 31: MobileNetV2 int8 at b=256 on an H200 ran 53,089 img/s with it against 49,897 with cuDNN's graphs there.
    /// </summary>
    internal bool OwnInt8NarrowPointwise(long[] kernel, long[] strides, long[] pads, long c, long k, long pixels) =>
        _target.Int8Convolutions is Int8ConvChoice.Pointwise or Int8ConvChoice.Auto && k >= 2 * c && _target.ComputeCapability >= 61 && kernel.All(v => v == 1) && strides.All(v => v == 1) && pads.All(v => v == 0)
            && KernelSource.Int8NarrowPointwiseTakes(c, k) && !PointwiseKernelTakes(c, k) && pixels <= int.MaxValue;

    /// <summary>The own kernels' offsets (<paramref name="offset"/>'s floats) as the int32 bit patterns they read, derived once per recipe and constants.</summary>
    private PlanValue OwnOffsets(string recipe, HostTensor w, HostTensor wScale, HostTensor? bias, PlanValue offset)
    {
        var offsets = _target.Derive(recipe + ":own", [w, wScale, bias], () =>
        {
            var o = offset.Constant!;
            return HostTensor.CreateInts(ElementType.Int32, [o.Count], i => BitConverter.SingleToInt32Bits((float)o[i]));
        });
        return new PlanValue(offsets.Type, offsets.Shape, offsets);
    }

    /// <summary>
    /// Emits the own int8 convolution of <paramref name="layer"/> (a residual block's end fused where the layer's output
    /// is one, the layer has no ReLU of its own and <see cref="Int8Layers.ResidualSwitch"/> does not say off; else a SiLU
    /// and its QuantizeLinear where they follow) and returns how it runs.
    /// </summary>
    private string LowerOwnInt8Conv(Int8Layer layer, PlanValue xq, HostTensor w, HostTensor wScale, HostTensor? bias, (double Scale, double Zero) x, (OnnxProto.NodeProto Node, double Scale, ElementType Type, double Zero) q, long[] kernel, long[] strides, long[] pads, long[] outSpatial, long[] yShape, OwnInt8Kernel which, (int M, int N) tile = default)
    {
        var relu = layer.Relu is not null;
        var narrow = which == OwnInt8Kernel.Narrow;
        var depthwise = which == OwnInt8Kernel.Depthwise;
        var clamp = layer.Clamp;
        var fusion = relu || narrow || depthwise || clamp is not null || Int8Layers.ResidualSetting == false ? null : FindInt8Residual(q.Node, yShape); // the narrow and depthwise kernels end no residual block
        var own = q; // the convolution's own QuantizeLinear (its saturation stays in a fused block)
        if (fusion is not null)
        {
            (q, relu) = ((fusion.Quantize, fusion.YScale, fusion.YType, fusion.YZero), fusion.Relu is not null);
        }

        var outShift = StoredShift(q.Type);
        var storedYZero = q.Zero - outShift;
        var input = Int8Input(xq);
        var zero = x.Zero - input.Shift; // the input's zero point as stored: what a tap outside the image reads
        var (n, c, k) = (xq.Shape[0], xq.Shape[1], w.Shape[0]);
        long[] inSpatial = [xq.Shape[2], xq.Shape[3]], unpadded = [0, 0];
        var recipe = Int8ConvRecipe(x.Scale, zero, q.Scale, storedYZero, inSpatial, strides, unpadded);
        var (krsc, _, offset, _, alpha, _) = Int8ConvConstants(recipe, w, wScale, bias, x.Scale, zero, q.Scale, storedYZero, inSpatial, outSpatial, kernel, strides, unpadded);
        (double Scale, double Offset, double Low, double High)? residual = null;
        if (fusion is { } f)
        {
            // In output steps: the residual's byte times s_r/s_y plus its zero point's share; the convolution's value
            // clamped where its own QuantizeLinear saturates ((low - z) s / s_y, (high - z) s / s_y).
            var (low, high) = QuantRange(own.Type);
            residual = (f.ResidualScale / q.Scale, (f.Residual.Shift - f.ResidualZero) * f.ResidualScale / q.Scale, (low - own.Zero) * own.Scale / q.Scale, (high - own.Zero) * own.Scale / q.Scale);
        }

        var offsets = OwnOffsets(recipe, w, wScale, bias, offset);

        // A SiLU after the convolution (no ReLU, no residual block's end) and its QuantizeLinear, exactly as the model
        // rounds them: the step writes the SiLU's quantized output.
        var silu = relu || fusion is not null || clamp is not null ? null : FindInt8Silu(q.Node);
        var y = NewValue(ElementType.Int8, yShape, true, "int8 activation " + (silu?.Quantize ?? q.Node).Output[0]);
        var epilogue = new Int8ConvEpilogue(q.Type, q.Zero, relu, residual, silu is null ? null : new Int8SiluEpilogue(q.Scale, silu.Sigmoid, silu.ZScale, silu.ZZero, silu.ZType), clamp is { } cl ? (cl.Low / q.Scale, cl.High / q.Scale) : null);
        var pixels = n * outSpatial[0] * outSpatial[1];
        var fused = fusion is not null ? $", residual Add{(relu ? " and ReLU" : string.Empty)} fused" : silu is not null ? ", SiLU fused" : string.Empty;
        KernelCode code;
        long threads;
        int block;
        string how;
        if (depthwise)
        {
            // Its filter as the kernel reads it: a channel group's row chunks as 16 bytes (four channels' four taps).
            var rows = outSpatial[0] > 1 ? 2 : 1;
            var (kh, kw) = (kernel[0], kernel[1]);
            var words = _target.Derive(recipe + ":depthwise", [w], () =>
            {
                var bytes = KernelSource.Int8DepthwiseFilter((ch, r, s) => (sbyte)w[(((ch * kh) + r) * kw) + s], k, kh, kw);
                return HostTensor.CreateInts(ElementType.Int8, [bytes.Length], i => bytes[i]);
            });
            krsc = new PlanValue(words.Type, words.Shape, words);
            code = KernelSource.Int8Depthwise(k, kernel, strides, n, inSpatial, outSpatial, pads, (int)zero, epilogue, rows);
            (threads, block, how) = (KernelSource.Int8DepthwiseThreads(n, k, outSpatial, rows), KernelSource.Int8DepthwiseBlock, $"int8 (own depthwise kernel, dp4a{fused})");
        }
        else if (narrow)
        {
            code = KernelSource.Int8NarrowPointwise(c, k, pixels, epilogue);
            (threads, block, how) = (pixels, KernelSource.Int8NarrowPointwiseBlock, $"int8 (own narrow pointwise kernel, dp4a{fused})");
        }
        else if (which == OwnInt8Kernel.Tiled)
        {
            code = KernelSource.Int8Conv(c, kernel, strides, n, k, inSpatial, outSpatial, pads, tile.M, tile.N, Int8ConvStages, (int)zero, epilogue);
            (threads, block, how) = (KernelSource.Int8ConvThreads(pixels, k, tile.M, tile.N), KernelSource.Int8ConvBlock, $"int8 (own kernel, {tile.M}x{tile.N} tiles{fused})");
        }
        else
        {
            // A block end whose residual is a projection shortcut set aside for it computes that shortcut itself.
            var projection = fusion is not null && _deferredSteps.TryGetValue(fusion.Residual.Int8.Buffer, out var d) && d is Int8DeferredShortcut p
                && PointwiseSharedBytes(c, p.Channels) <= _target.MaxSharedBytesPerBlock ? p : null;
            var shortcut = projection is null ? null : new Int8PointwiseProjection(projection.Channels, projection.Epilogue);
            var stages = _target.Int8PointwiseStages;
            var warps = KernelSource.Int8WarpPointwiseWarps(c, stages, _target.MaxSharedBytesPerBlock, _target.Int8PointwiseMostWarps, projection?.Channels ?? 0);
            var resident = _target.Int8PointwiseWarps
                ? KernelSource.Int8WarpPointwiseBlocksPerSm(c, stages, _target.MaxSharedBytesPerBlock, _target.Int8PointwiseResidentBlocks, projection?.Channels ?? 0, warps)
                : KernelSource.Int8PointwiseBlocksPerSm(c, stages, _target.MaxSharedBytesPerBlock, _target.Int8PointwiseResidentBlocks, projection?.Channels ?? 0);
            var inside = projection is null ? string.Empty : ", its projection shortcut computed in it";
            if (fusion is not null && FindChainedReduction(fusion.Quantize, outShift, yShape, c, projection?.Channels ?? 0) is { } chain)
            {
                // The next block's 1x1 reduction computed in the same kernel, from the tile just written.
                return EmitChainedBlockEnd(chain, layer, fusion, q.Node, y, yShape, outShift, input.Int8, krsc, alpha, offsets, epilogue, projection, c, pixels, fused);
            }

            if (_target.Int8PointwiseWarps)
            {
                // 32-pixel warp tiles where asked (BATCHWISE_INT8_POINTWISE_ROWS=32 or pairs), for the block ends without a shortcut inside.
                var warpTile = projection is null ? _target.Int8PointwiseTile : Int8WarpTile.Sixteen;
                string OfWarps() => warps == KernelSource.Int8WarpPointwiseBlock / 32 ? string.Empty : $" of {warps} warps";
                var rows = warpTile == Int8WarpTile.Sixteen ? KernelSource.Int8WarpPointwiseTileM : KernelSource.Int8WarpPointwiseWideTileM;
                if (warpTile == Int8WarpTile.Pairs)
                {
                    warps = KernelSource.Int8PairPointwiseWarps(c, stages, _target.MaxSharedBytesPerBlock, _target.Int8PointwiseMostWarps);
                    resident = KernelSource.ResidentBlocks(KernelSource.Int8PairPointwiseSharedBytes(c, stages, warps), _target.MaxSharedBytesPerBlock, _target.Int8PointwiseResidentBlocks);
                    var pairBlocks = KernelSource.Int8PairPointwiseBlocks(pixels, k, _target.Multiprocessors, resident, warps);
                    code = KernelSource.Int8PairPointwise(c, k, pixels, pairBlocks, epilogue, warps, stages, resident);
                    (threads, block, how) = (pairBlocks * warps * 32, warps * 32, $"int8 (own pointwise kernel, warp pairs on 32-pixel tiles, {pairBlocks} persistent blocks{OfWarps()}, {stages} tiles in flight a pair{fused})");
                }
                else
                {
                    if (rows != KernelSource.Int8WarpPointwiseTileM)
                    {
                        warps = KernelSource.Int8WarpPointwiseWarps(c, stages, _target.MaxSharedBytesPerBlock, _target.Int8PointwiseMostWarps, 0, rows);
                        resident = KernelSource.ResidentBlocks(KernelSource.Int8WarpPointwiseSharedBytes(c, stages, 0, warps, rows), _target.MaxSharedBytesPerBlock, _target.Int8PointwiseResidentBlocks);
                    }

                    // On warpgroup MMA where asked (BATCHWISE_INT8_WGMMA, sm_90): the block's warps in whole warpgroups.
                    var groups = _target.Int8WarpGroups && _target.ComputeCapability == 90 && projection is null && rows == KernelSource.Int8WarpPointwiseTileM && KernelSource.Int8WarpGroupWarps(warps) > 0;
                    if (groups)
                    {
                        warps = KernelSource.Int8WarpGroupWarps(warps);
                    }

                    var blocks = KernelSource.Int8WarpPointwiseBlocks(pixels, k, _target.Multiprocessors, resident, warps, rows);
                    code = KernelSource.Int8WarpPointwise(c, k, pixels, blocks, epilogue, stages, resident, shortcut, warps, rows, groups);
                    var ofRows = rows == KernelSource.Int8WarpPointwiseTileM ? string.Empty : $" of {rows} pixels";
                    (threads, block, how) = (blocks * warps * 32, warps * 32, $"int8 (own pointwise kernel, warp tiles{ofRows}{(groups ? " on warpgroup MMA" : string.Empty)}, {blocks} persistent blocks{OfWarps()}, {stages} tiles in flight a warp{fused}{inside})");
                }
            }
            else
            {
                var blocks = KernelSource.Int8PointwiseBlocks(pixels, k, _target.Multiprocessors, resident);
                code = KernelSource.Int8Pointwise(c, k, pixels, blocks, epilogue, stages, resident, shortcut);
                (threads, block, how) = (blocks * KernelSource.Int8PointwiseBlock, KernelSource.Int8PointwiseBlock, $"int8 (own pointwise kernel, {blocks} persistent blocks, {stages} tiles in flight{fused}{inside})");
            }

            if (projection is not null)
            {
                _deferredSteps.Remove(fusion!.Residual.Int8.Buffer);
                _node += $" ({how})";
                Emit(new KernelStep(_node, code, threads, block,
                    [y.Buffer, Dev(input.Int8), Dev(krsc), Dev(alpha), Dev(offsets), -1, projection.Input, projection.Filter, projection.Scale, projection.Offset]));
                PublishInt8Conv(q.Node, layer.Relu, [.. layer.Between ?? [], .. fusion.Folded], y, yShape, outShift);
                return how;
            }
        }

        var buffers = new[] { y.Buffer, Dev(input.Int8), Dev(krsc), Dev(alpha), Dev(offsets), fusion is null ? -1 : Dev(fusion.Residual.Int8) };
        if (which == OwnInt8Kernel.Pointwise && fusion is null && silu is null && !relu && clamp is null && ProjectionAbsorbed(q.Node, c, yShape))
        {
            // A projection shortcut: set aside for its block end's kernel, which computes it (or emitted as planned where a
            // step reads its output first).
            how += ", set aside for its block end's kernel";
            _deferredSteps[y.Buffer] = new Int8DeferredShortcut(new KernelStep($"{_node} ({how})", code, threads, block, buffers), buffers[1], buffers[2], buffers[3], buffers[4], c, epilogue);
            _node += $" ({how})";
            PublishInt8Conv(q.Node, layer.Relu, [.. layer.Between ?? []], y, yShape, outShift);
            return how;
        }

        _node += $" ({how})";
        Emit(new KernelStep(_node, code, threads, block, buffers));
        PublishInt8Conv(silu?.Quantize ?? q.Node, layer.Relu, [.. layer.Between ?? [], .. fusion?.Folded ?? [], .. silu?.Folded ?? []], y, yShape, silu is null ? outShift : StoredShift(silu.ZType));
        return how;
    }
}
