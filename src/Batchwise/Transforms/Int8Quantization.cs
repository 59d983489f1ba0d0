using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Static int8 quantization in QDQ form: QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into int8 kernels (QLinearConv, QGemm, QLinearMatMul). Weights of Conv, Gemm and MatMul: per-channel symmetric int8; biases int32 at scale s_x·s_w; activations: per-tensor asymmetric uint8 from calibrated ranges.</summary>
public sealed class Int8Quantization(CalibrationData calibration, CalibrationMethod method = CalibrationMethod.MinMax) : IModelTransform
{
    private static readonly HashSet<string> Quantizable = new(StringComparer.Ordinal) { "Conv", "Gemm", "MatMul" };

    /// <summary>Where calibration inputs come from.</summary>
    public CalibrationData Calibration { get; } = calibration;

    /// <summary>How ranges are chosen.</summary>
    public CalibrationMethod Method { get; } = method;

    /// <summary>Weights in 7 bits (see <see cref="Int8Weights.ReduceRangeByDefault"/>); by default where this CPU lacks VNNI.</summary>
    public bool ReduceRange { get; init; } = Int8Weights.ReduceRangeByDefault;

    /// <summary>
    /// Activation ranges by value name: given, calibration is skipped and these are used (ranges cached by an earlier
    /// run); null, they are calibrated. After <see cref="Apply"/>, the ranges the model was quantized with.
    /// </summary>
    public IReadOnlyDictionary<string, (float Min, float Max)>? Ranges { get; set; }

    /// <summary>What the user asked for, as errors name it (--int8 for optimize, --precision int8 for an engine session).</summary>
    public string Flag { get; init; } = "--int8";

    /// <summary>
    /// Every activation's uint8 zero point 128 and its scale max(|min|, |max|) / 127 (symmetric, as TensorRT quantizes
    /// activations), rather than its range over 255 levels: half the resolution of a one-sided range (a ReLU's), but the
    /// stored zero point of the cuda engine's int8 activations is then 0, so padded convolutions read their input as it
    /// lies (no padded copy of it).
    /// </summary>
    public bool SymmetricActivations { get; init; }

    /// <inheritdoc/>
    public string Name => "int8";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Opset < 13)
        {
            throw new BatchwiseException($"{Flag} needs opset 13 or newer (per-channel DequantizeLinear); '{model.Name}' uses opset {model.Opset}", "Convert it first with OpsetConversion(13) (`batchwise optimize --int8` does this by itself).");
        }

        var graph = model.Graph;
        var inits = GraphSurgery.Initializers(graph);
        var consumers = GraphSurgery.Consumers(graph);
        var graphOutputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);

        // The nodes to quantize: Conv/Gemm/MatMul with a float32 weight initializer, or a float16 one behind a Cast (fp16-weight exports).
        var producers = GraphSurgery.Producers(graph);
        var weights = new Dictionary<OnnxProto.NodeProto, OnnxProto.TensorProto>(ReferenceEqualityComparer.Instance);
        foreach (var n in graph.Node)
        {
            if (Quantizable.Contains(n.OpType) && n.Domain.Length == 0 && n.Input.Count > 1 && !inits.ContainsKey(n.Input[0])
                && GraphSurgery.FloatWeight(n.Input[1], inits, producers) is { } w && WeightAxis(n, w) >= 0)
            {
                weights[n] = w;
            }
        }

        var targets = weights.Keys.ToList();
        if (targets.Count == 0)
        {
            throw new BatchwiseException($"{Flag}: '{model.Name}' has no Conv, Gemm or MatMul with float32 weights (or float16 weights cast to float32) to quantize", Flag == "--int8" ? "Quantize a float32 model (not one already converted to fp16 compute or int8)." : "Run it at --precision fp32 or fp16.");
        }

        // A Relu that alone reads a quantized output is absorbed: quantizing its output with zero point 0 saturates
        // negatives to zero, which is the Relu (as ONNX Runtime's own quantizer does). The op then writes the Relu's output.
        // Symmetric activations (zero point 128) keep their Relus, quantizing the Relu's output (op -> Relu -> Q): the
        // saturation would not be one.
        var absorbed = new Dictionary<OnnxProto.NodeProto, OnnxProto.NodeProto>();
        string OutputOf(OnnxProto.NodeProto n)
        {
            var y = n.Output[0];
            if (!graphOutputs.Contains(y) && consumers.TryGetValue(y, out var r) && r.Count == 1 && r[0].OpType == "Relu" && r[0].Domain.Length == 0
                && !graphOutputs.Contains(r[0].Output[0]))
            {
                if (!SymmetricActivations)
                {
                    absorbed[n] = r[0];
                }

                return r[0].Output[0];
            }

            return y;
        }

        // Activations: each target's data input, and its output when something else reads it (so ONNX Runtime sees DQ -> op -> Q).
        // A MatMul's output stays float unless another quantized op reads it (as ONNX Runtime's quantizer does): ONNX Runtime
        // runs DQ -> MatMul as MatMulIntegerToFloat, and a transformer's projections feed attention, GELU and LayerNorm,
        // where a second rounding per tensor costs accuracy (the zoo ViT's logits: cosine 0.976 with, 0.996 without).
        var targetInputs = targets.Select(n => n.Input[0]).ToHashSet(StringComparer.Ordinal);
        var activations = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in targets)
        {
            activations.Add(n.Input[0]);
            var y = OutputOf(n);
            if (consumers.ContainsKey(y) && (n.OpType != "MatMul" || targetInputs.Contains(y)))
            {
                activations.Add(y);
            }
        }

        // A Split some of whose outputs are quantized (YOLOv8's C2f: one half feeds a convolution, the other only a Concat):
        // its other outputs are quantized too, as ONNX Runtime's quantizer quantizes every output of a Split, so the
        // producer can write every part as int8 (the cuda engine's SiLU with its split in the convolution's step).
        var splits = graph.Node.Where(n => n.OpType == "Split" && n.Domain.Length == 0 && n.Output.Any(activations.Contains)).ToList();
        foreach (var n in splits)
        {
            foreach (var o in n.Output.Where(o => o.Length > 0 && consumers.ContainsKey(o) && !graphOutputs.Contains(o)))
            {
                activations.Add(o);
            }
        }

        // Residual Adds of two quantized activations: quantizing their output too lets ONNX Runtime run QLinearAdd.
        var adds = graph.Node.Where(n => n.OpType == "Add" && n.Domain.Length == 0 && n.Input.Count == 2 && n.Input.All(activations.Contains) && consumers.ContainsKey(n.Output[0])).ToList();
        foreach (var n in adds)
        {
            activations.Add(OutputOf(n));
        }

        var ranges = Ranges ?? new RangeCollector(Method).Collect(model, Calibration.Samples(model), activations);
        var missing = activations.Where(a => !ranges.ContainsKey(a)).ToList();
        if (missing.Count > 0)
        {
            throw Ranges is null
                ? new BatchwiseException($"{Flag}: no float32 values were seen for '{missing[0]}' during calibration", "Quantize a float32 model.")
                : new BatchwiseException($"{Flag}: the cached activation ranges have none for '{missing[0]}'", "Delete the int8 folder of the cache (BATCHWISE_CACHE_DIR) to calibrate again.");
        }

        Ranges = activations.ToDictionary(a => a, a => ranges[a], StringComparer.Ordinal);

        foreach (var (n, relu) in absorbed)
        {
            n.Output[0] = relu.Output[0];
            graph.Node.Remove(relu);
        }

        consumers = GraphSurgery.Consumers(graph);
        var names = GraphSurgery.Names(graph);
        var added = new List<OnnxProto.NodeProto>();
        var scales = new Dictionary<string, float>(StringComparer.Ordinal);
        var sourceOf = new Dictionary<string, string>(StringComparer.Ordinal);

        // Activations: one Q/DQ pair per value, every reader rewired to the dequantized value (graph outputs keep the float value).
        foreach (var a in activations)
        {
            var (min, max) = ranges[a];
            min = Math.Min(min, 0);
            max = Math.Max(max, 0);
            var bound = Math.Max(-min, max);
            var scale = SymmetricActivations ? (bound > 0 ? bound / 127f : 1f) : max > min ? (max - min) / 255f : 1f;
            var zeroPoint = SymmetricActivations ? (byte)128 : (byte)Math.Clamp(MathF.Round(-min / scale), 0, 255);
            scales[a] = scale;
            var s = GraphSurgery.Unique(names, a + "_scale");
            var z = GraphSurgery.Unique(names, a + "_zero_point");
            graph.Initializer.Add(GraphSurgery.FloatTensor(s, [], [scale]));
            graph.Initializer.Add(GraphSurgery.RawTensor<byte>(z, ElementType.UInt8, [], [zeroPoint]));
            var q = GraphSurgery.Unique(names, a + "_quantized");
            var dq = GraphSurgery.Unique(names, a + "_dequantized");
            sourceOf[dq] = a;
            foreach (var reader in consumers.GetValueOrDefault(a) ?? [])
            {
                for (var i = 0; i < reader.Input.Count; i++)
                {
                    if (reader.Input[i] == a)
                    {
                        reader.Input[i] = dq;
                    }
                }
            }

            added.Add(GraphSurgery.Node("QuantizeLinear", GraphSurgery.Unique(names, a + "_QuantizeLinear"), [a, s, z], [q]));
            added.Add(GraphSurgery.Node("DequantizeLinear", GraphSurgery.Unique(names, a + "_DequantizeLinear"), [q, s, z], [dq]));
        }

        // Weights per channel, biases in int32.
        foreach (var n in targets)
        {
            var w = weights[n];
            var axis = WeightAxis(n, w);
            var (qw, wScales) = QuantizeWeight(w, axis, names, ReduceRange, out var wScaleName, out var wZeroName);
            graph.Initializer.Add(qw);
            graph.Initializer.Add(GraphSurgery.FloatTensor(wScaleName, [wScales.Length], wScales));
            graph.Initializer.Add(GraphSurgery.RawTensor<sbyte>(wZeroName, ElementType.Int8, [wScales.Length], new sbyte[wScales.Length]));
            var wdq = GraphSurgery.Unique(names, w.Name + "_dequantized");
            added.Add(GraphSurgery.Node("DequantizeLinear", GraphSurgery.Unique(names, w.Name + "_DequantizeLinear"), [qw.Name, wScaleName, wZeroName], [wdq], GraphSurgery.IntAttr("axis", axis)));
            n.Input[1] = wdq;

            var biasIndex = 2;
            if (n.OpType != "MatMul" && n.Input.Count > biasIndex && GraphSurgery.FloatWeight(n.Input[biasIndex], inits, producers) is { } bias && bias.Dims.Count == 1 && bias.Dims[0] == wScales.Length
                && scales.TryGetValue(sourceOf.GetValueOrDefault(n.Input[0], n.Input[0]), out var xScale))
            {
                var b = bias.ToFloats();
                var bScales = wScales.Select(ws => ws * xScale).ToArray();
                var qb = new int[b.Length];
                for (var c = 0; c < b.Length; c++)
                {
                    qb[c] = bScales[c] > 0 ? (int)Math.Clamp(Math.Round(b[c] / bScales[c]), int.MinValue, int.MaxValue) : 0;
                }

                var qbName = GraphSurgery.Unique(names, bias.Name + "_quantized");
                var bsName = GraphSurgery.Unique(names, bias.Name + "_scale");
                var bzName = GraphSurgery.Unique(names, bias.Name + "_zero_point");
                graph.Initializer.Add(GraphSurgery.RawTensor<int>(qbName, ElementType.Int32, [b.Length], qb));
                graph.Initializer.Add(GraphSurgery.FloatTensor(bsName, [b.Length], bScales));
                graph.Initializer.Add(GraphSurgery.RawTensor<int>(bzName, ElementType.Int32, [b.Length], new int[b.Length]));
                var bdq = GraphSurgery.Unique(names, bias.Name + "_dequantized");
                added.Add(GraphSurgery.Node("DequantizeLinear", GraphSurgery.Unique(names, bias.Name + "_DequantizeLinear"), [qbName, bsName, bzName], [bdq], GraphSurgery.IntAttr("axis", 0)));
                n.Input[biasIndex] = bdq;
            }
        }

        graph.Node.AddRange(added);
        graph.ValueInfo.Clear();
        GraphSurgery.TopologicalSort(graph);
        new DeadNodeRemoval().Apply(model);
        model.Validate();
        return $"{targets.Count} nodes quantized (weights int8 per channel{(ReduceRange ? " in 7 bits, as this CPU lacks VNNI" : string.Empty)}, {activations.Count} activations uint8 per tensor{(SymmetricActivations ? " (symmetric: zero point 128)" : string.Empty)}, {adds.Count} residual Adds, {absorbed.Count} Relus absorbed; {Method.ToString().ToLowerInvariant()} ranges from {Calibration.Description})";

    }

    /// <summary>The output-channel axis of a weight: 0 for Conv and Gemm with transB=1, 1 for MatMul [in, out] and Gemm without transB; -1 when not quantizable.</summary>
    internal static int WeightAxis(OnnxProto.NodeProto node, OnnxProto.TensorProto weight) => node.OpType switch
    {
        "Conv" when weight.Dims.Count >= 3 => 0,
        "Gemm" when weight.Dims.Count == 2 && GraphSurgery.Int(node, "transA", 0) == 0 => GraphSurgery.Int(node, "transB", 0) == 1 ? 0 : 1,
        "MatMul" when weight.Dims.Count == 2 => 1,
        _ => -1,
    };

    /// <summary>Symmetric int8 per channel along <paramref name="axis"/>: scale = max|w|/127 (63 with <paramref name="reduceRange"/>).</summary>
    internal static (OnnxProto.TensorProto Quantized, float[] Scales) QuantizeWeight(OnnxProto.TensorProto w, int axis, HashSet<string> names, bool reduceRange, out string scaleName, out string zeroName)
    {
        var values = w.ToFloats();
        var dims = w.Dims.ToArray();
        var channels = (int)dims[axis];
        var inner = (int)dims.Skip(axis + 1).Aggregate(1L, (a, b) => a * b);
        var (q, scales) = Int8Weights.Quantize(values, channels, i => i / inner % channels, reduceRange);
        scaleName = GraphSurgery.Unique(names, w.Name + "_scale");
        zeroName = GraphSurgery.Unique(names, w.Name + "_zero_point");
        return (GraphSurgery.RawTensor<sbyte>(GraphSurgery.Unique(names, w.Name + "_quantized"), ElementType.Int8, dims, q), scales);
    }
}
