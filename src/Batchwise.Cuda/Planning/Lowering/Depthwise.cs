using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Depthwise convolutions (groups == input channels == output channels, one filter each) through the engine's own kernel
/// rather than cuDNN, whose channels-last half-precision depthwise kernels ran 50-150x off bandwidth on an H200
/// (ConvNeXt's 7x7, MobileNetV3's 3x3 stride 2). The bias starts an elementwise chain, so the activation after it fuses.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Largest filter window the own kernel unrolls (11 x 11); larger ones stay with cuDNN.</summary>
    private const long MaxDepthwiseTaps = 121;

    /// <summary>Largest input span (columns) one thread holds in registers per filter row.</summary>
    private const long MaxDepthwiseSpan = 48;

    /// <summary>
    /// Blocks a multiprocessor of a depthwise kernel with tables launches at most (their threads then take positions a grid
    /// apart): 12, a multiple of every residency from 1 to 4 blocks an SM (41 KB of tables a block; registers decide which),
    /// so the blocks run in whole rounds, each filling its tables once for several positions a thread.
    /// </summary>
    private const int DepthwiseBlocksPerMultiprocessor = 12;

    /// <summary>
    /// Output rows a thread of a depthwise kernel computes (each loaded input row serves every one of them whose window
    /// holds it): BATCHWISE_DEPTHWISE_ROWS=1|2|4 for every depthwise kernel; unset, 2 for a kernel with tables (an 8-bit
    /// input's chain, a quantized output's) and 1 for the rest (null here).
    /// </summary>
    internal static int? DepthwiseRowsFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_DEPTHWISE_ROWS")?.Trim() switch
    {
        null or "" => null,
        "1" => 1,
        "2" => 2,
        "4" => 4,
        var other => throw new BatchwiseException($"BATCHWISE_DEPTHWISE_ROWS '{other}' is not 1, 2 or 4", "Unset it (two output rows a thread for a kernel with tables, one for the rest), or give 1, 2 or 4."),
    };

    /// <summary>
    /// Where the convolution's output goes through elementwise nodes that each read the one before alone — QuantizeLinear
    /// and DequantizeLinear per tensor with constants, Clip with constant bounds, Relu (a QDQ model's Conv -> Q -> DQ ->
    /// Clip -> Q) — up to a QuantizeLinear into 8 bits: the nodes up to the last such QuantizeLinear, its output and type,
    /// the first QuantizeLinear (its constants) and the expression over z it quantizes (the nodes before it, as their
    /// elementwise forms write them; null: z itself) with, where more follows it, the rest as a table over its values, so
    /// the kernel writes the 8-bit tensor itself. Null where no such QuantizeLinear follows.
    /// </summary>
    private (List<OnnxProto.NodeProto> Nodes, string Output, ElementType Type, KernelSource.QuantRounding First, string? FirstInput, QuantizedOutputTable? Table)? QuantizedDepthwiseOutput(string name)
    {
        PlanValue? Value(string v) => _values.GetValueOrDefault(v);
        var (nodes, current) = (new List<OnnxProto.NodeProto>(), name);
        (List<OnnxProto.NodeProto>, string, ElementType, KernelSource.QuantRounding, string?, QuantizedOutputTable?)? found = null;

        // Up to the first QuantizeLinear the nodes build its expression over z (lead); after it, an expression over its
        // value qv (rest), which the kernel evaluates for each of the 256 values into a table.
        var (lead, rest) = ("z", "qv");
        (KernelSource.QuantRounding Pair, string Input)? first = null;
        void Apply(Func<string, string> node)
        {
            if (first is null)
            {
                lead = node(lead);
            }
            else
            {
                rest = node(rest);
            }
        }

        while (nodes.Count < 16 && SoleConsumer(current) is { Domain: "" } next && next.Input[0] == current)
        {
            var attrs = new NodeAttributes(next);
            switch (next.OpType)
            {
                case "QuantizeLinear" when attrs.Int("block_size", 0) == 0 && QdqPerTensor(next, Value) is { } q && q.Scale > 0:
                    var type = QuantizedType(next, q);
                    if (type is not (ElementType.UInt8 or ElementType.Int8))
                    {
                        return found;
                    }

                    var (low, high) = QuantRange(type);
                    var input = lead; // what this QuantizeLinear quantizes, where it is the first
                    Apply(e => QuantizeExpression(e, q.Scale, q.Zero, type));
                    first ??= (new KernelSource.QuantRounding((float)q.Scale, q.Zero, low, high), input);
                    nodes.Add(next);
                    found = ([.. nodes], next.Output[0], type, first.Value.Pair, first.Value.Input == "z" ? null : first.Value.Input, rest == "qv" ? null : new QuantizedOutputTable(first.Value.Pair.Low, rest));
                    break;
                case "DequantizeLinear" when attrs.Int("block_size", 0) == 0 && QdqPerTensor(next, Value) is { } d:
                    Apply(e => DequantizeExpression(e, d.Scale, d.Zero));
                    nodes.Add(next);
                    break;
                case "Relu":
                    Apply(e => Over("Relu", (_, fallback) => fallback, e));
                    nodes.Add(next);
                    break;
                case "Clip" when ConstantClip(next):
                    var bounds = ClipBounds(ScalarInput(next, 1), ScalarInput(next, 2), attrs);
                    Apply(e => Over("Clip", bounds, e));
                    nodes.Add(next);
                    break;
                default:
                    return found;
            }

            current = next.Output[0];
        }

        return found;
    }

    /// <summary>
    /// Lowers a 1-d or 2-d depthwise convolution with a constant filter (BatchNormalization already folded into it) to
    /// the own kernel and returns true, or returns false (nothing emitted) for any other convolution. The elementwise chain
    /// that makes its input (<see cref="OneLeafChain"/>) and the quantizing chain after it
    /// (<see cref="QuantizedDepthwiseOutput"/>) run in the kernel where they qualify.
    /// </summary>
    private bool TryLowerDepthwise(PlanValue x, PlanValue w, PlanValue? b, string outName, long[] yShape, long[] strides, long[] dilations, long groups, long[] padsBegin, long[] outSpatial)
    {
        var r = x.Shape.Length - 2;
        var c = x.Shape[1];
        if (r is < 1 or > 2 || w.Constant is null || w.Shape.Length != r + 2 || groups != c || w.Shape[0] != c || w.Shape[1] != 1 || x.PaddedChannels > 0)
        {
            return false;
        }

        // 1-d runs as 2-d with a height of 1.
        long[] Lift(long[] v, long one) => r == 1 ? [one, .. v] : v;
        var kernel = Lift(w.Shape[2..], 1);
        var (s, d, pb) = (Lift(strides, 1), Lift(dilations, 1), Lift(padsBegin, 0));
        var inSpatial = Lift(x.Shape[2..], 1);
        var outs = Lift(outSpatial, 1);
        var span = ((KernelSource.DepthwiseOutputsPerThread - 1) * s[1]) + ((kernel[1] - 1) * d[1]) + 1;
        if (kernel[0] * kernel[1] > MaxDepthwiseTaps || span > MaxDepthwiseSpan || inSpatial.Concat(outs).Concat(pb).Any(v => v > int.MaxValue / 4))
        {
            return false;
        }

        var nhwc = PreferNhwc(x.Shape);
        var (valueType, type) = (x.Type, St(x));
        var source = OneLeafChain(x, nhwc, eachElementOnce: false);
        x = source?.Leaf ?? (nhwc ? Nhwc(x) : Nchw(x));
        var taps = kernel[0] * kernel[1];
        var f = w.Constant;
        var filter = nhwc
            ? new PlanValue(w.Type, [taps, c], _target.Derive($"depthwise-filter:{c}x{taps}", [f], () => HostTensor.Create(f.Type, [taps, c], i => f[((i % c) * taps) + (i / c)])))
            : w;
        var quantize = QuantizedDepthwiseOutput(outName);
        var activation = quantize is null ? DepthwiseActivation(outName) : null;
        var outType = quantize?.Type ?? type;
        var raw = quantize is not null ? Output(quantize.Value.Output, outType, yShape, nhwc)
            : activation is { } act ? Output(act.Output, valueType, yShape, nhwc)
            : Output(outName, valueType, yShape, nhwc);
        // The kernel adds the bias itself, so what follows reads one value: an elementwise chain after it (bias + SiLU
        // before a squeeze-excite mean, which then reads through it) starts from the output alone, and a LayerNorm or a
        // pooling reads the output as written instead of a pass that adds the bias first.
        var fusedBias = b;
        var fusion = source is null && quantize is null && activation is null && b is null ? null
            : new DepthwiseFusion(St(x), source?.Statements, source?.Result, outType, fusedBias is not null, quantize?.First, quantize?.FirstInput ?? activation?.Expression, quantize?.Table);
        var vector = nhwc && St(x).SizeOf() == 1 && outType.SizeOf() == 1 && c % 4 == 0 ? 4 : KernelSource.DepthwiseVector(type, nhwc, c);
        var n = x.Shape[0];
        // A kernel with a table (an 8-bit input's chain, a quantized output's) holds each table once per lane and reuses
        // each loaded input row for several output rows; its threads take positions a grid apart, so a block fills its
        // tables once for many of them.
        var tables = fusion?.Tables == true;
        var rows = DepthwiseRowsFromEnvironment ?? (tables ? 2 : 1);
        var threads = KernelSource.DepthwiseThreads(nhwc, vector, n, c, outs, rows);
        if (activation is { Nodes: var applied })
        {
            _node += " + " + string.Join(" + ", applied.Select(a => a.OpType));
        }

        Kernel(KernelSource.Depthwise(type, nhwc, vector, n, c, inSpatial, outs, kernel, s, d, pb, fusion, rows),
            tables ? Math.Min(threads, (long)_target.Multiprocessors * DepthwiseBlocksPerMultiprocessor * KernelSource.BlockSize) : threads,
            fusedBias is { } fb ? [Dev(raw), Dev(x), Dev(filter), Dev(View(fb, [fb.Count]))] : [Dev(raw), Dev(x), Dev(filter)]);
        if (quantize is not null)
        {
            _folded.UnionWith(quantize.Value.Nodes);
        }

        if (activation is not null)
        {
            _folded.UnionWith(activation.Value.Nodes);
        }

        return true;
    }

    /// <summary>An elementwise operator's own expression over the expression <paramref name="e"/> so far, as a pending chain writes it.</summary>
    private static string Over(string op, Func<string, double, double> attr, string e) =>
        ReplaceOperands(ElementwiseOps.Expression(op, [ElementType.Float], attr), _ => $"((float)({e}))");

    /// <summary>Whether a Clip's bounds are known constants (attributes before opset 11; one-element constants or absent after).</summary>
    private bool ConstantClip(OnnxProto.NodeProto clip)
    {
        bool Known(int input) => clip.Input.Count <= input || clip.Input[input].Length == 0 || _values.GetValueOrDefault(clip.Input[input])?.Constant is { Count: 1 };
        return _model.Opset < 11 || (Known(1) && Known(2));
    }

    /// <summary>The constant of <paramref name="node"/>'s input <paramref name="input"/>, or null where it has none there.</summary>
    private HostTensor? ScalarInput(OnnxProto.NodeProto node, int input) =>
        node.Input.Count > input && node.Input[input].Length > 0 ? _values[node.Input[input]].Constant : null;

    /// <summary>BATCHWISE_DEPTHWISE_ACTIVATION: on (default) or off (the activation after a depthwise layer a chain of its own).</summary>
    internal static bool DepthwiseActivationFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_DEPTHWISE_ACTIVATION")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "on" => true,
        "off" => false,
        var other => throw new BatchwiseException($"BATCHWISE_DEPTHWISE_ACTIVATION '{other}' is not on or off", "Unset it (a ReLU, ReLU6, hard-swish or leaky ReLU after a depthwise layer is the kernel's own), or set it to off to run it as a chain after the kernel."),
    };

    /// <summary>
    /// The activations after a depthwise convolution that the kernel applies to its sum before it writes (each node the
    /// one before's sole reader, on its first input: Relu, Clip with constant bounds, HardSwish, HardSigmoid, LeakyRelu —
    /// MobileNetV2's ReLU6, MobileNetV3's hard-swish): the nodes, the last one's output and the expression over z (the
    /// sum plus the bias). Null where none follows or BATCHWISE_DEPTHWISE_ACTIVATION is off. Without it such an activation
    /// was a chain over the kernel's output, which a following product (cuBLASLt, taking no prologue) had written by a pass
    /// of its own: one kernel and a read and write of the layer's output a block (session 38's CPU plan of MobileNetV2 fp16:
    /// 17 such passes in 84 steps).
    /// </summary>
    private (List<OnnxProto.NodeProto> Nodes, string Output, string Expression)? DepthwiseActivation(string name)
    {
        if (!_target.DepthwiseActivations)
        {
            return null;
        }

        var (nodes, current, expression) = (new List<OnnxProto.NodeProto>(), name, "z");
        while (nodes.Count < 4 && SoleConsumer(current) is { Domain: "" or "ai.onnx" } next && next.Input[0] == current)
        {
            var attrs = new NodeAttributes(next);
            Func<string, double, double>? attr = next.OpType switch
            {
                "Relu" or "HardSwish" => (_, fallback) => fallback,
                "LeakyRelu" or "HardSigmoid" => (key, fallback) => attrs.Float(key, fallback),
                "Clip" when ConstantClip(next) => ClipBounds(ScalarInput(next, 1), ScalarInput(next, 2), attrs),
                _ => null,
            };
            if (attr is null)
            {
                break;
            }

            expression = Over(next.OpType, attr, expression);
            nodes.Add(next);
            current = next.Output[0];
        }

        return nodes.Count == 0 ? null : (nodes, current, expression);
    }
}
