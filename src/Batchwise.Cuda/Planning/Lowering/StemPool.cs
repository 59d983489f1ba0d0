using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Who runs a network's stem (input -> Conv [-> BatchNormalization] -> Relu -> MaxPool 3x3/2) in half precision.</summary>
internal enum StemPoolChoice
{
    /// <summary>The own fused kernel wherever it can take the stem.</summary>
    Auto,

    /// <summary>The layers one by one (the input converted on entry, the convolution, the pooling).</summary>
    Off,
}

/// <summary>
/// ResNet's stem as one kernel (<see cref="KernelSource.StemPool"/>): the graph input, float32 NCHW as the caller gives
/// it, goes straight into the fused convolution + bias + ReLU + 3x3 max pooling, whose output is the only one written.
/// Layer by layer (session 22, ResNet-50 fp16 at b=256 on an H200) the entry kernel, the 7x7 convolution over channels
/// padded to 8 and the pooling took 0.10 + 0.60 + 0.15 ms of 6.1: the convolution's output alone is 411 MB written and
/// read again.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Graph inputs left as given (not converted on entry) for a fused stem, with the channels their entry would have padded to.</summary>
    private readonly Dictionary<PlanValue, long> _stemInputs = new(ReferenceEqualityComparer.Instance);

    /// <summary>BATCHWISE_STEM_POOL: auto (default) or off.</summary>
    internal static StemPoolChoice StemPoolFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_STEM_POOL")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => StemPoolChoice.Auto,
        "off" => StemPoolChoice.Off,
        var other => throw new BatchwiseException($"BATCHWISE_STEM_POOL '{other}' is not auto or off", "Unset it (a stem of convolution, ReLU and 3x3 max pooling runs as one kernel), or set BATCHWISE_STEM_POOL=off to run its layers one by one."),
    };

    /// <summary>
    /// BATCHWISE_STEM_SPLITS: auto (default; 0 here: the most of 4, 2, 1 whose blocks fit one an SM), 1 (a block computes all
    /// of a band's channels), 2 or 4 (a band's output channels split over that many blocks, where each share is a multiple
    /// of 16). At batch 1 ResNet-50's stem is 56 bands, one pooled row each, for 132 SMs. Session 40's H200, ResNet-50 fp16
    /// b=1 alternating twice: 1 split 3,156 / 3,158 img/s, 2 splits 3,178 / 3,195, 4 splits 3,154 / 3,108; the stem's step
    /// 14.7 / 11.9 / 13.6 µs with its events. Auto takes 2 there and 1 from b=2 (112 bands).
    /// </summary>
    internal static int StemSplitsFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_STEM_SPLITS")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => 0,
        "1" => 1,
        "2" => 2,
        "4" => 4,
        var other => throw new BatchwiseException($"BATCHWISE_STEM_SPLITS '{other}' is not 1, 2, 4 or auto", "Unset it (a band's output channels split over as many blocks as fill the SMs once), or set BATCHWISE_STEM_SPLITS=1, 2 or 4."),
    };

    /// <summary>
    /// The channel splits of the fused stem for <paramref name="blocks"/> (images x bands) and <paramref name="channels"/>
    /// output channels: <paramref name="requested"/> where each share is a multiple of 16 (else 1); under auto (0) the most
    /// of 4, 2 and 1 with such shares whose blocks fit one an SM (two an SM took 4 at b=1, measured no faster than 1).
    /// </summary>
    internal static int StemChannelSplits(int requested, long blocks, long channels, int multiprocessors) => requested switch
    {
        0 => new[] { 4, 2, 1 }.First(s => s == 1 || (channels % (16 * s) == 0 && blocks * s <= multiprocessors)),
        _ => channels % (16 * requested) == 0 ? requested : 1,
    };

    /// <summary>
    /// Whether graph input <paramref name="input"/> feeds only a stem the fused kernel takes (<see cref="StemPattern"/>:
    /// the pattern and the kernel's limits, shared with explain), in half precision on compute capability 8.0 or later.
    /// </summary>
    private bool FeedsStemPool(string input, long[] shape, ElementType type) =>
        FeedsStemKernel(type) && StemPattern.Find(input, shape, SoleConsumer, InitializerShape) is not null;

    /// <summary>Whether the fused stem kernel may read a graph input of <paramref name="type"/>: float32, half precision, compute capability 8.0 or later, not switched off.</summary>
    private bool FeedsStemKernel(ElementType type) =>
        Half && _target.StemPools != StemPoolChoice.Off && _target.ComputeCapability >= 80 && type == ElementType.Float;

    /// <summary>
    /// A QDQ stem the fused kernel takes (<see cref="StemPattern.FindQuantized"/>) when the int8 path is on: its nodes, the
    /// input's rounding and the pooled output's int8 form.
    /// </summary>
    private sealed record QuantizedStem(StemPattern.QuantizedMatch Match, KernelSource.QuantRounding Input, KernelSource.StemPoolQuantized Output);

    /// <summary>Graph inputs of <see cref="_stemInputs"/> whose stem is a QDQ one.</summary>
    private readonly Dictionary<PlanValue, QuantizedStem> _quantizedStems = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// The QDQ stem graph input <paramref name="input"/> feeds (input -> QuantizeLinear -> DequantizeLinear -> Conv [->
    /// Relu] -> QuantizeLinear -> DequantizeLinear -> MaxPool -> QuantizeLinear), when the int8 path is on and the fused
    /// kernel can take it: each pair per tensor with constants, the DequantizeLinears undoing their QuantizeLinears, 8-bit
    /// stored types, and the convolution's rounding saturating negatives to zero where no Relu is written (zero point at
    /// the type's floor: ONNX Runtime's quantizer and <c>optimize --int8</c> drop the Relu so). Null otherwise.
    /// </summary>
    private QuantizedStem? QuantizedStemPool(string input, long[] shape, ElementType type, IReadOnlyDictionary<string, HostTensor> initializers)
    {
        if (!(Int8Layers.Enabled || _target.Int8) || !FeedsStemKernel(type) || _graphOutputs.Contains(input)
            || StemPattern.FindQuantized(input, shape, SoleConsumer, ConstantShape) is not { } m)
        {
            return null;
        }

        if (QdqRounding(m.InputQuantize, m.InputDequantize, initializers) is not { } entry || QdqRounding(m.ConvQuantize, m.ConvDequantize, initializers) is not { } conv
            || QdqRounding(m.PoolQuantize, null, initializers) is not { } pool || (m.Relu is null && conv.Rounding.Low != conv.Rounding.Zero) || StemChannels(m.InputDequantize.Output[0], shape) == 0)
        {
            return null;
        }

        return new QuantizedStem(m, entry.Rounding, new KernelSource.StemPoolQuantized(conv.Rounding, pool.Rounding, StoredShift(pool.Stored)));
    }

    /// <summary>A constant's dimensions: an initializer's, or those of a DequantizeLinear of initializers (a QDQ model's filter and bias).</summary>
    private long[]? ConstantShape(string name) =>
        InitializerShape(name) ?? (Producer(name) is { OpType: "DequantizeLinear", Domain: "" } dq && ConstantFilter(name) ? InitializerShape(dq.Input[0]) : null);

    /// <summary>An initializer's dimensions, or null when <paramref name="name"/> is not one.</summary>
    private long[]? InitializerShape(string name) => _model.Graph.Initializer.FirstOrDefault(t => t.Name == name)?.Dims.ToArray();

    /// <summary>
    /// Lowers the stem whose graph input <paramref name="x"/> was left as given (<see cref="_stemInputs"/>) to the fused
    /// kernel and returns true; or converts the input as its entry would have (the stem was not what
    /// <see cref="FeedsStemPool"/> saw, as when a BatchNormalization could not be folded) and returns false with
    /// <paramref name="x"/> the converted value.
    /// </summary>
    private bool TryLowerStemPool(ref PlanValue x, PlanValue w, PlanValue? b, string outName, long[] kernel, long[] padsBegin, long[] outSpatial)
    {
        if (!_stemInputs.Remove(x, out var padTo))
        {
            return false;
        }

        var quantized = _quantizedStems.Remove(x, out var qs) ? qs : null;

        // The window, strides and channels are as FeedsStemPool saw them; what lowering may still find otherwise is a
        // BatchNormalization left unfolded, a computed filter or bias, or a device with less shared memory a block.
        var (n, c, k) = (x.Shape[0], x.Shape[1], w.Shape[0]);
        var warps = StemPattern.Warps(outSpatial[1]);
        var relu = quantized is null ? SoleConsumer(outName) as OnnxProto.NodeProto : quantized.Match.Relu;
        var pool = quantized?.Match.Pool ?? (relu is { OpType: "Relu", Domain: "" } ? StemPattern.MaxPool(relu.Output[0], SoleConsumer) : null);
        if ((quantized is null ? pool is null : outName != quantized.Match.Conv.Output[0]) || w.Constant is null || b is { Constant: null }
            || KernelSource.StemPoolSharedBytes(warps, kernel[0], kernel[1], checked((int)k)) > _target.MaxSharedBytesPerBlock)
        {
            x = EnterInput(x, padTo, quantized?.Input);
            return false;
        }

        var pooled = outSpatial.Select(o => ((o - 1) / 2) + 1).ToArray();
        _folded.Add(pool!);
        var (kh, kw, rw) = (kernel[0], kernel[1], StemPattern.RowReduction(kernel[1]));
        var f = w.Constant;
        var filter = new PlanValue(ElementType.Float, [k, kh * rw], _target.Derive($"stem-pool-filter:{rw}", [f], () => HostTensor.Create(ElementType.Float, [k, kh * rw], i =>
        {
            var (o, ki, e) = (i / (kh * rw), i / rw % kh, i % rw);
            var (tap, ch) = (e / 4, e % 4);
            return tap < kw && ch < c ? f[(((((o * c) + ch) * kh) + ki) * kw) + tap] : 0;
        })));
        long[] yShape = [n, k, pooled[0], pooled[1]];
        PlanValue y;
        if (quantized is { Match: var m })
        {
            // The pooled value's QuantizeLinear writes the int8 activation the stem's int8 readers take as it is.
            y = NewValue(ElementType.Int8, yShape, true, "int8 activation " + m.PoolQuantize.Output[0]);
            PublishInt8Conv(m.PoolQuantize, relu, [], y, yShape, quantized.Output.Shift);
            _folded.Add(m.ConvQuantize);
            _folded.Add(m.ConvDequantize);
        }
        else
        {
            _folded.Add(relu!);
            y = Output(pool!.Output[0], ElementType.Float, yShape, nhwc: true);
        }

        var bands = KernelSource.StemPoolBands(n, pooled[0], _target.Multiprocessors);
        var splits = StemChannelSplits(_target.StemSplits, n * bands, k, _target.Multiprocessors);
        var code = KernelSource.StemPool(x.Type, b is null ? null : St(b), checked((int)c), checked((int)k), kh, kw, warps, n, x.Shape[2..], outSpatial, pooled, padsBegin, bands, quantized?.Input, quantized?.Output, splits);
        var blocks = splits == 1 ? $"{bands} bands" : $"{bands} bands x {splits} channel splits";
        _node += quantized is null
            ? $" + Relu + MaxPool (own stem kernel from the {x.Type.ToString().ToLowerInvariant()} input, {blocks})"
            : $"{(relu is null ? string.Empty : " + Relu")} + QuantizeLinear + MaxPool + QuantizeLinear (own stem kernel from the {x.Type.ToString().ToLowerInvariant()} input rounded as its QuantizeLinear, int8 out, {blocks})";
        Emit(new KernelStep(_node, code, KernelSource.StemPoolThreads(n, bands, warps, splits), 32 * warps, [Dev(y), Dev(x), Dev(filter), b is null ? -1 : Dev(b)]));
        return true;
    }
}
