using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A convolution of a QDQ model as the cuda engine runs it: int8 on tensor cores (<see cref="Reason"/> null) with the
/// nodes around it that the int8 step absorbs, or in float between its QuantizeLinear/DequantizeLinear pairs, and why.
/// </summary>
/// <param name="Node">The Conv.</param>
/// <param name="Reason">Why it stays float; null when it runs int8.</param>
/// <param name="InputDequantize">DequantizeLinear of the activation (per tensor, uint8 or int8): its input is what the int8 step reads.</param>
/// <param name="WeightDequantize">DequantizeLinear of the int8 weight initializer (per channel on axis 0, or per tensor; zero points 0).</param>
/// <param name="Relu">A Relu between the Conv and its QuantizeLinear, fused into the requantization.</param>
/// <param name="Quantize">The QuantizeLinear (per tensor) whose output the int8 step writes.</param>
/// <param name="Between">
/// Nodes between the convolution and <paramref name="Quantize"/> that the step absorbs besides a ReLU: the convolution's
/// own QuantizeLinear, its DequantizeLinear and a Clip or Relu (a QDQ model's ReLU6 as Conv -> Q -> DQ -> Clip -> Q),
/// whose bounds the last QuantizeLinear's saturation, <paramref name="Relu"/> and <paramref name="Clamp"/> give; null for none.
/// </param>
/// <param name="Clamp">
/// Real bounds of <paramref name="Between"/> that the last QuantizeLinear's saturation does not give (the first
/// QuantizeLinear's range, narrower by a fraction of a step, or a Clip's bound inside the range): only the own kernels'
/// epilogue clamps, so elsewhere the layer writes its own QuantizeLinear and the nodes after it run as they are; null for none.
/// </param>
internal sealed record Int8Layer(OnnxProto.NodeProto Node, string? Reason, OnnxProto.NodeProto? InputDequantize = null, OnnxProto.NodeProto? WeightDequantize = null, OnnxProto.NodeProto? Relu = null, OnnxProto.NodeProto? Quantize = null, IReadOnlyList<OnnxProto.NodeProto>? Between = null, (double Low, double High)? Clamp = null)
{
    /// <summary>True when the layer runs int8 on tensor cores.</summary>
    public bool Int8 => Reason is null;

    /// <summary>A depthwise convolution (groups == channels, one filter each), which the own int8 depthwise kernel runs.</summary>
    public bool Depthwise => Node.OpType == "Conv" && Node.Attribute.FirstOrDefault(a => a.Name == "group") is { I: > 1 };

    /// <summary>The layer writing its own QuantizeLinear, the nodes of <see cref="Between"/> left to run after it (a route without the clamp).</summary>
    public Int8Layer Unfolded => Between is null ? this : this with { Quantize = Between[0], Relu = null, Between = null, Clamp = null };

    /// <summary>A MatMul or Gemm (int8 GEMM, float output) rather than a Conv.</summary>
    public bool IsGemm => Node.OpType is "MatMul" or "Gemm";
}

/// <summary>
/// Finds the convolutions of a QDQ model that run int8: DQ(int8 weight) and DQ(Q(x)) into a Conv [-> Relu] -> Q, as
/// `batchwise optimize --int8` and ONNX Runtime's quantizer write them. Decided from the graph and its initializers
/// alone (shapes of activations are checked again when a plan is built), so planning tests can ask without a GPU.
/// </summary>
internal static class Int8Layers
{
    /// <summary>
    /// The environment variable that turns the int8 path on (<c>BATCHWISE_INT8=on</c>, or <c>conv</c> for convolutions
    /// only). Off by default: measured on an H200 (cuDNN 9.14), ResNet-50 from `optimize --int8` ran 0.11x (b=1) and 0.06x
    /// (b=256) the speed of the float path between the pairs, because cuDNN's int8 convolutions that take per-channel
    /// weight scales write fp32 sums (INT8_EXT_CONFIG, 0.03-0.15x fp16 per layer) and cuBLASLt refuses a per-row scale
    /// vector for int8 GEMMs; the fast int8-to-int8 convolutions (INT8_CONFIG, 1.1-4x fp16) take one scale per tensor and
    /// symmetric activations, which `optimize --int8` does not write yet. Off, QDQ models run in float between the pairs.
    /// Session 8 adds cuDNN's graph API route (<see cref="GraphSwitch"/>: per-channel scales fused at int8-to-int8 speed,
    /// 1.1-4.9x fp16 per layer in the probe). With it and the fused residual blocks (both the defaults since session 26)
    /// ResNet-50 runs 1.12x fp16 at b=256 but 0.96x at b=1, MobileNetV2 0.8x and BERT 0.62-0.75x (sessions 25-26): not a
    /// gain everywhere, so the path stays a choice (this switch, or <c>--precision int8</c> for a float model).
    /// </summary>
    public const string Switch = "BATCHWISE_INT8";

    /// <summary>
    /// The environment variable for int8 convolutions through cuDNN's graph API: <c>on</c> tries them first; <c>pad</c>
    /// too, padding a padded convolution's input explicitly (one copy) instead of the border offsets, the fallback where
    /// cuDNN refuses those; <c>off</c> leaves the cuBLASLt 1x1 and legacy INT8_EXT_CONFIG routes. On by default since
    /// session 26: with the residual blocks fused it ran every int8 measurement of sessions 13-26 (ResNet-50 at b=256
    /// 51,037 img/s, 1.12x fp16), where the routes without it ran 2,015 (session 26, call 1: cuBLASLt refuses the
    /// per-row-alpha int8 GEMM on an H200, so every convolution took the legacy route and a separate requantization).
    /// Session 8's plan-time fault at b=256 is named when it happens (layer, problem, cuDNN engine:
    /// <see cref="GraphSkipSwitch"/> skips an engine).
    /// </summary>
    public const string GraphSwitch = "BATCHWISE_INT8_GRAPH";

    /// <summary>
    /// <c>BATCHWISE_INT8_TRACE=1</c>: each int8 decision, and each trial run of a cuDNN graph before it starts, as a line on
    /// standard error (flushed), so a run that ends in a fault or a crash names the layer and the engine it was trying.
    /// </summary>
    public const string TraceSwitch = "BATCHWISE_INT8_TRACE";

    /// <summary>
    /// <c>BATCHWISE_INT8_GRAPH_SKIP=12,40</c>: cuDNN engines (global indices, as decisions and faults name them) the graph
    /// route never takes; <c>BATCHWISE_INT8_GRAPH_SUMS=int32|float</c>: only that type of convolution sums (both by default).
    /// </summary>
    public const string GraphSkipSwitch = "BATCHWISE_INT8_GRAPH_SKIP";

    /// <summary>See <see cref="GraphSkipSwitch"/>.</summary>
    public const string GraphSumsSwitch = "BATCHWISE_INT8_GRAPH_SUMS";

    /// <summary>
    /// <c>BATCHWISE_INT8_GRAPH_CONFIGS=N</c>: how many of cuDNN's engine configurations for an int8 graph convolution are
    /// timed on the real shapes, the fastest kept (<see cref="DefaultGraphConfigs"/> by default; 1: the first that runs,
    /// untimed, as before session 11, where heuristics mode A's first plan ran 4-10x slower than fp16 on ResNet-50's 1x1
    /// reductions).
    /// </summary>
    public const string GraphConfigsSwitch = "BATCHWISE_INT8_GRAPH_CONFIGS";

    /// <summary>Configurations timed per int8 graph problem unless <see cref="GraphConfigsSwitch"/> says otherwise.</summary>
    public const int DefaultGraphConfigs = 8;

    /// <summary>See <see cref="GraphConfigsSwitch"/>.</summary>
    public static int GraphConfigs => ParseGraphConfigs(Environment.GetEnvironmentVariable(GraphConfigsSwitch));

    /// <summary>A count of configurations from 1 to 64 (unset: <see cref="DefaultGraphConfigs"/>); a BatchwiseException for anything else.</summary>
    internal static int ParseGraphConfigs(string? text) =>
        EnvironmentSetting.ParseInt(GraphConfigsSwitch, text, DefaultGraphConfigs, 1, 64, $"Unset it (times {DefaultGraphConfigs}), or set {GraphConfigsSwitch}=1 to take the first configuration that runs, untimed.");

    /// <summary>
    /// <c>BATCHWISE_INT8_GRAPH_SECONDS=S</c>: the plan time one int8 graph problem's timed search may take before it keeps
    /// the fastest configuration so far (<see cref="DefaultGraphSearchSeconds"/> by default). Each configuration of a
    /// runtime-compiled engine compiles before it runs (~0.2 s each on an H200, session 12).
    /// </summary>
    public const string GraphSecondsSwitch = "BATCHWISE_INT8_GRAPH_SECONDS";

    /// <summary>Seconds of timed search per int8 graph problem unless <see cref="GraphSecondsSwitch"/> says otherwise.</summary>
    public const double DefaultGraphSearchSeconds = 2.0;

    /// <summary>See <see cref="GraphSecondsSwitch"/>.</summary>
    public static double GraphSearchSeconds => ParseGraphSearchSeconds(Environment.GetEnvironmentVariable(GraphSecondsSwitch));

    /// <summary>Seconds from 0.1 to 600 (unset: <see cref="DefaultGraphSearchSeconds"/>); a BatchwiseException for anything else.</summary>
    internal static double ParseGraphSearchSeconds(string? text) =>
        EnvironmentSetting.ParseSeconds(GraphSecondsSwitch, text, DefaultGraphSearchSeconds, 0.1, 600, $"Unset it ({DefaultGraphSearchSeconds} s per problem), or give more seconds to time more configurations.");

    /// <summary>
    /// <c>BATCHWISE_INT8_GRAPH_PLAN_SECONDS=S</c>: the time a plan's timed int8 graph searches may spend together before it
    /// starts no more (<see cref="DefaultGraphPlanSeconds"/> by default; 0: none is timed; the last one started keeps its
    /// own limit). Once spent, a later problem without a stored choice takes the first configuration that runs, untimed
    /// and not stored, and the trace counts them.
    /// ResNet-50 at b=256 spent ~45 s in 22 searches on an H200 (session 12).
    /// </summary>
    public const string GraphPlanSecondsSwitch = "BATCHWISE_INT8_GRAPH_PLAN_SECONDS";

    /// <summary>Seconds of timed int8 graph search per plan unless <see cref="GraphPlanSecondsSwitch"/> says otherwise.</summary>
    public const double DefaultGraphPlanSeconds = 30.0;

    /// <summary>See <see cref="GraphPlanSecondsSwitch"/>.</summary>
    public static double GraphPlanSeconds => ParseGraphPlanSeconds(Environment.GetEnvironmentVariable(GraphPlanSecondsSwitch));

    /// <summary>Seconds from 0 to 3600 (unset: <see cref="DefaultGraphPlanSeconds"/>); a BatchwiseException for anything else.</summary>
    internal static double ParseGraphPlanSeconds(string? text) =>
        EnvironmentSetting.ParseSeconds(GraphPlanSecondsSwitch, text, DefaultGraphPlanSeconds, 0, 3600, $"Unset it ({DefaultGraphPlanSeconds} s of int8 searches per plan), give more seconds to time more problems, or 0 to time none.");

    /// <summary>
    /// <c>BATCHWISE_INT8_GRAPH_CHOICES=nearest|octave|exact</c>: where an int8 graph problem without a stored choice of its
    /// own takes the stored choice of the same problem at another batch size (<see cref="Int8GraphChoices"/>; nearest by
    /// default). An int8-specific switch, not BATCHWISE_CONV_CHOICES: fp16's octave default costs one heuristics query
    /// (milliseconds) at a new octave, an int8 search 1.2-2.6 s per problem (~45 s per ResNet-50 plan).
    /// </summary>
    public const string GraphChoicesSwitch = "BATCHWISE_INT8_GRAPH_CHOICES";

    /// <summary>See <see cref="GraphChoicesSwitch"/>.</summary>
    public static Int8GraphChoices GraphChoices => ParseGraphChoices(Environment.GetEnvironmentVariable(GraphChoicesSwitch));

    /// <summary>nearest, octave or exact (unset: nearest); a BatchwiseException for anything else.</summary>
    internal static Int8GraphChoices ParseGraphChoices(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "nearest" => Int8GraphChoices.Nearest,
        "octave" => Int8GraphChoices.Octave,
        "exact" => Int8GraphChoices.Exact,
        _ => throw new BatchwiseException($"{GraphChoicesSwitch} '{text}' is not nearest, octave or exact", $"Unset it (a new batch size reuses the choices of the nearest known batch within a factor of 4), or set {GraphChoicesSwitch}=octave (search once per batch octave) or exact (search every batch size)."),
    };

    /// <summary>True when <see cref="TraceSwitch"/> is set (1, on, true).</summary>
    public static bool Tracing => Environment.GetEnvironmentVariable(TraceSwitch)?.Trim().ToLowerInvariant() is "1" or "on" or "true";

    /// <summary>Writes <paramref name="line"/> to standard error when <see cref="Tracing"/>.</summary>
    public static void Trace(string line)
    {
        if (Tracing)
        {
            Console.Error.WriteLine("[int8] " + line);
            Console.Error.Flush();
        }
    }

    /// <summary>The engines <see cref="GraphSkipSwitch"/> names.</summary>
    public static IReadOnlySet<long> SkippedEngines => ParseEngines(Environment.GetEnvironmentVariable(GraphSkipSwitch));

    /// <summary>A comma-separated list of engine indices; a BatchwiseException for anything else.</summary>
    internal static HashSet<long> ParseEngines(string? text)
    {
        var result = new HashSet<long>();
        foreach (var part in (text ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!long.TryParse(part, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var engine) || engine < 0)
            {
                throw new BatchwiseException($"{GraphSkipSwitch} '{text}' is not a list of cuDNN engine indices", $"Give them comma-separated, e.g. {GraphSkipSwitch}=12,40 (the int8 decisions name each layer's engine).");
            }

            result.Add(engine);
        }

        return result;
    }

    /// <summary>The sums types <see cref="GraphSumsSwitch"/> allows, in the order tried (cuDNN data types).</summary>
    public static int[] GraphSums => Environment.GetEnvironmentVariable(GraphSumsSwitch)?.Trim().ToLowerInvariant() switch
    {
        null or "" or "both" => [Interop.Cudnn.CUDNN_DATA_INT32, Interop.Cudnn.CUDNN_DATA_FLOAT],
        "int32" => [Interop.Cudnn.CUDNN_DATA_INT32],
        "float" => [Interop.Cudnn.CUDNN_DATA_FLOAT],
        var other => throw new BatchwiseException($"{GraphSumsSwitch} '{other}' is not int32, float or both", $"Unset it, or set {GraphSumsSwitch}=int32 or float."),
    };

    /// <summary><see cref="GraphSwitch"/> as "on", "off" or "pad" ("pad" is "on": a padded convolution's input is always padded explicitly).</summary>
    public static string GraphMode => Environment.GetEnvironmentVariable(GraphSwitch)?.Trim().ToLowerInvariant() switch
    {
        null or "" or "on" => "on",
        "pad" => "pad",
        "off" => "off",
        var other => throw new BatchwiseException($"{GraphSwitch} '{other}' is not on, pad or off", $"Unset it, or set {GraphSwitch}=on."),
    };

    /// <summary>
    /// <c>BATCHWISE_INT8_RESIDUAL=fused</c> (the default since session 26) or <c>off</c>: a residual block's Add (+ ReLU)
    /// and QuantizeLinear join the cuDNN graph (or the own kernel) of the block's last int8 convolution (the residual
    /// read as int8, scaled, added before the ReLU and the output's quantization), so no separate pass makes the block's
    /// output int8 (ResNet-50 int8 at b=256 on an H200: 0.57x fp16 without, 1.05x with, session 13). Where cuDNN refuses
    /// the longer graph the convolution takes its plain graph and the separate pass.
    /// </summary>
    public const string ResidualSwitch = "BATCHWISE_INT8_RESIDUAL";

    /// <summary>True unless <see cref="ResidualSwitch"/> says off.</summary>
    public static bool ResidualFused => ResidualSetting != false;

    /// <summary><see cref="ResidualSwitch"/>: true for fused, false for off, null when unset (fused).</summary>
    public static bool? ResidualSetting => Environment.GetEnvironmentVariable(ResidualSwitch)?.Trim().ToLowerInvariant() switch
    {
        null or "" => null,
        "off" => false,
        "fused" => true,
        var other => throw new BatchwiseException($"{ResidualSwitch} '{other}' is not fused or off", $"Unset it, or set {ResidualSwitch}=fused or off."),
    };

    /// <summary>
    /// <c>BATCHWISE_INT8_SILU=fused|off</c>: a SiLU between an int8 convolution's QuantizeLinear and the next
    /// (DequantizeLinear, Sigmoid, Mul, QuantizeLinear: YOLOv8's and EfficientNet's activation as a QDQ model writes it)
    /// joins the convolution's step (fused, the default: cuDNN's graph with a swish, which skips the convolution output's
    /// own rounding, or the own kernels' epilogue, which keeps it), or runs as a kernel of its own (off, for measuring).
    /// </summary>
    public const string SiluSwitch = "BATCHWISE_INT8_SILU";

    /// <summary>True unless <see cref="SiluSwitch"/> says off.</summary>
    public static bool SiluFused => ParseSiluFused(Environment.GetEnvironmentVariable(SiluSwitch));

    /// <summary>fused (or unset) true, off false; a BatchwiseException for anything else.</summary>
    internal static bool ParseSiluFused(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "fused" => true,
        "off" => false,
        var other => throw new BatchwiseException($"{SiluSwitch} '{other}' is not fused or off", $"Unset it (the SiLU in the convolution's step), or set {SiluSwitch}=off to run it as a kernel of its own."),
    };

    /// <summary>True when <see cref="Switch"/> says on or conv.</summary>
    public static bool Enabled => Environment.GetEnvironmentVariable(Switch)?.Trim().ToLowerInvariant() is "on" or "conv";

    /// <summary>False when <see cref="Switch"/> says off or <c>conv</c> (convolutions only: MatMul and Gemm stay float).</summary>
    public static bool GemmsEnabled => Enabled && !string.Equals(Environment.GetEnvironmentVariable(Switch), "conv", StringComparison.OrdinalIgnoreCase);

    /// <summary>Every Conv, MatMul and Gemm of the model with its decision (only models with a QuantizeLinear or DequantizeLinear have any).</summary>
    public static IReadOnlyDictionary<OnnxProto.NodeProto, Int8Layer> Find(OnnxModel model, bool enabled, bool gemms = true)
    {
        var graph = model.Graph;
        var result = new Dictionary<OnnxProto.NodeProto, Int8Layer>(ReferenceEqualityComparer.Instance);
        if (!graph.Node.Any(n => n.OpType is "QuantizeLinear" or "DequantizeLinear"))
        {
            return result;
        }

        var inits = graph.Initializer.ToDictionary(t => t.Name, t => t, StringComparer.Ordinal);
        var producers = new Dictionary<string, OnnxProto.NodeProto>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<OnnxProto.NodeProto>>(StringComparer.Ordinal);
        foreach (var n in graph.Node)
        {
            foreach (var o in n.Output.Where(o => o.Length > 0))
            {
                producers[o] = n;
            }

            foreach (var i in n.Input.Where(i => i.Length > 0))
            {
                if (!consumers.TryGetValue(i, out var list))
                {
                    consumers[i] = list = [];
                }

                list.Add(n);
            }
        }

        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var conv in graph.Node.Where(n => n.OpType == "Conv" && n.Domain.Length == 0))
        {
            result[conv] = enabled ? Decide(conv, inits, producers, consumers, outputs, model.Opset) : new Int8Layer(conv, $"{Switch}=off");
        }

        foreach (var gemm in graph.Node.Where(n => n.OpType is "MatMul" or "Gemm" && n.Domain.Length == 0))
        {
            result[gemm] = enabled && gemms ? DecideGemm(gemm, inits, producers) : new Int8Layer(gemm, enabled ? $"{Switch}=conv" : $"{Switch}=off");
        }

        return result;
    }

    /// <summary>
    /// A MatMul or Gemm of DQ(Q(a)) (per tensor) by DQ(int8 weight initializer) (per tensor, or per output column), with a
    /// constant bias: an int8 GEMM whose int32 sums dequantize (scale, zero point, bias) in the kernel that reads them.
    /// </summary>
    private static Int8Layer DecideGemm(OnnxProto.NodeProto node, Dictionary<string, OnnxProto.TensorProto> inits, Dictionary<string, OnnxProto.NodeProto> producers)
    {
        Int8Layer Float(string reason) => new(node, reason);
        OnnxProto.NodeProto? Producer(string name) => producers.TryGetValue(name, out var p) && p.Domain.Length == 0 ? p : null;
        if (Producer(node.Input[0]) is not { OpType: "DequantizeLinear" } adq || inits.ContainsKey(adq.Input[0]))
        {
            return Float("its first operand is not a DequantizeLinear of a computed tensor");
        }

        if (PerTensor(adq, inits) is { } aWhy)
        {
            return Float("first operand DequantizeLinear: " + aWhy);
        }

        if (node.Input.Count < 2 || Producer(node.Input[1]) is not { OpType: "DequantizeLinear" } wdq || !inits.TryGetValue(wdq.Input[0], out var w))
        {
            return Float("its weight is not a DequantizeLinear of an initializer");
        }

        if ((ElementType)w.DataType != ElementType.Int8 || w.Dims.Count != 2)
        {
            return Float($"its weight is {((ElementType)w.DataType).ShortName()} of rank {w.Dims.Count} (a 2-d int8 matrix only)");
        }

        var gemm = node.OpType == "Gemm";
        if (gemm && (Attr(node, "transA", 0) != 0 || Float32(node, "alpha") != 1 || (node.Input.Count > 2 && node.Input[2].Length > 0 && Float32(node, "beta") != 1)))
        {
            return Float("Gemm with transA, alpha or beta");
        }

        // The output-column axis of the weight: [in, out] unless a Gemm reads it transposed.
        var outAxis = gemm && Attr(node, "transB", 0) == 1 ? 0 : 1;
        var (inner, columns) = outAxis == 0 ? (w.Dims[1], w.Dims[0]) : (w.Dims[0], w.Dims[1]);
        if (wdq.Input.Count < 2 || !inits.TryGetValue(wdq.Input[1], out var wScale) || (ElementType)wScale.DataType != ElementType.Float)
        {
            return Float("its weight scale is not a float32 initializer");
        }

        var axis = Attr(wdq, "axis", 1);
        axis = axis < 0 ? axis + 2 : axis;
        if (Count(wScale) != 1 && !(Count(wScale) == columns && axis == outAxis))
        {
            return Float($"its weight has {Count(wScale)} scales on axis {axis} (per tensor or per output column only)");
        }

        if (wdq.Input.Count > 2 && wdq.Input[2].Length > 0 && (!inits.TryGetValue(wdq.Input[2], out var wZp) || HostTensor.FromProto(wZp) is var z && Enumerable.Range(0, (int)z.Count).Any(i => z[i] != 0)))
        {
            return Float("its weight zero point is not 0 (asymmetric weights)");
        }

        if (inner % 4 != 0 || columns % 4 != 0)
        {
            return Float($"{inner} inputs and {columns} outputs (int8 GEMMs want multiples of 4)");
        }

        if (gemm && node.Input.Count > 2 && node.Input[2].Length > 0 && !Constant(node.Input[2], inits, producers))
        {
            return Float("its bias is not a constant");
        }

        return new Int8Layer(node, null, adq, wdq);
    }

    private static float Float32(OnnxProto.NodeProto n, string name) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : 1f;

    private static Int8Layer Decide(OnnxProto.NodeProto conv, Dictionary<string, OnnxProto.TensorProto> inits, Dictionary<string, OnnxProto.NodeProto> producers, Dictionary<string, List<OnnxProto.NodeProto>> consumers, HashSet<string> outputs, long opset)
    {
        Int8Layer Float(string reason) => new(conv, reason);
        OnnxProto.NodeProto? Producer(string name) => producers.TryGetValue(name, out var p) && p.Domain.Length == 0 ? p : null;

        // The activation: DequantizeLinear of a computed 8-bit tensor, one scale and zero point.
        if (Producer(conv.Input[0]) is not { OpType: "DequantizeLinear" } xdq)
        {
            return Float("its input is not a DequantizeLinear output (a float activation)");
        }

        if (inits.ContainsKey(xdq.Input[0]))
        {
            return Float("its input is a constant");
        }

        if (PerTensor(xdq, inits) is { } xWhy)
        {
            return Float("input DequantizeLinear: " + xWhy);
        }

        // The weight: DequantizeLinear of an int8 initializer, per tensor or per output channel, symmetric.
        if (Producer(conv.Input[1]) is not { OpType: "DequantizeLinear" } wdq || !inits.TryGetValue(wdq.Input[0], out var w))
        {
            return Float("its weight is not a DequantizeLinear of an initializer");
        }

        if ((ElementType)w.DataType != ElementType.Int8 || w.Dims.Count != 4)
        {
            return Float($"its weight is {((ElementType)w.DataType).ShortName()} of rank {w.Dims.Count} (int8 2-d filters only)");
        }

        if (wdq.Input.Count < 2 || !inits.TryGetValue(wdq.Input[1], out var wScale) || (ElementType)wScale.DataType != ElementType.Float)
        {
            return Float("its weight scale is not a float32 initializer");
        }

        var k = w.Dims[0];
        var scaleCount = Count(wScale);
        var axis = Attr(wdq, "axis", 1);
        if (scaleCount != 1 && !(scaleCount == k && (axis == 0 || axis == -4)))
        {
            return Float($"its weight has {scaleCount} scales on axis {axis} (per tensor or per output channel only)");
        }

        if (wdq.Input.Count > 2 && wdq.Input[2].Length > 0 && (!inits.TryGetValue(wdq.Input[2], out var wZp) || HostTensor.FromProto(wZp) is var z && Enumerable.Range(0, (int)z.Count).Any(i => z[i] != 0)))
        {
            return Float("its weight zero point is not 0 (asymmetric weights)");
        }

        // The convolution: plain 2-d, channel counts cuDNN's int8 kernels take; or depthwise ([C, 1, kh, kw], groups == C),
        // which the own int8 depthwise kernel runs (channels in fours).
        var c = w.Dims[1];
        var group = Attr(conv, "group", 1);
        if (group != 1 && !(c == 1 && k == group))
        {
            return Float("grouped convolution (int8 only where each group is one channel: depthwise)");
        }

        if (Ints(conv, "dilations") is { } d && d.Any(v => v != 1))
        {
            return Float("dilated convolution");
        }

        if (group != 1 ? k % 4 != 0 : c % 4 != 0 || k % 4 != 0)
        {
            return Float(group != 1 ? $"a depthwise convolution over {k} channels (the int8 kernel wants multiples of 4)" : $"{c} input and {k} output channels (int8 convolutions want multiples of 4)");
        }

        if (conv.Input.Count > 2 && conv.Input[2].Length > 0 && !Constant(conv.Input[2], inits, producers))
        {
            return Float("its bias is not a constant");
        }

        // The output: read only by a QuantizeLinear, or by a Relu read only by one.
        var y = conv.Output[0];
        OnnxProto.NodeProto? relu = null;
        if (outputs.Contains(y) || !consumers.TryGetValue(y, out var readers) || readers.Count != 1)
        {
            return Float("its output is read by more than a QuantizeLinear");
        }

        var next = readers[0];
        if (next.OpType == "Relu" && next.Domain.Length == 0)
        {
            relu = next;
            y = next.Output[0];
            if (outputs.Contains(y) || !consumers.TryGetValue(y, out readers) || readers.Count != 1)
            {
                return Float("its Relu's output is read by more than a QuantizeLinear");
            }

            next = readers[0];
        }

        if (next.OpType != "QuantizeLinear" || next.Domain.Length != 0 || next.Input[0] != y)
        {
            return Float($"its output goes to {next.OpType}, not a QuantizeLinear");
        }

        if (PerTensor(next, inits) is { } qWhy)
        {
            return Float("output QuantizeLinear: " + qWhy);
        }

        if (relu is null && FoldedClamp(next, inits, consumers, outputs, opset) is { } clamp)
        {
            return new Int8Layer(conv, null, xdq, wdq, clamp.Relu, clamp.Quantize, clamp.Between, clamp.Clamp);
        }

        return new Int8Layer(conv, null, xdq, wdq, relu, next);
    }

    /// <summary>
    /// After a convolution's QuantizeLinear <paramref name="q1"/>: DequantizeLinear (undoing it) -> Clip or Relu ->
    /// QuantizeLinear q2, each read by the next alone, with constant bounds: the step then writes q2 directly from the
    /// convolution's value (a QDQ model's ReLU6 after the layer), skipping only q1's rounding (a step of q2 at most). A
    /// lower bound of 0 is a ReLU at the real zero; a bound that q2's saturation gives within half a step needs nothing;
    /// any other (q1's saturation, a Clip's bound inside q2's range) is the clamp the own kernels apply. The nodes
    /// absorbed, the node that stands for a ReLU (null where none is needed), q2 and the clamp; null where the chain is
    /// not there or a lower bound is above 0.
    /// </summary>
    private static (OnnxProto.NodeProto[] Between, OnnxProto.NodeProto? Relu, OnnxProto.NodeProto Quantize, (double Low, double High)? Clamp)? FoldedClamp(OnnxProto.NodeProto q1, Dictionary<string, OnnxProto.TensorProto> inits, Dictionary<string, List<OnnxProto.NodeProto>> consumers, HashSet<string> outputs, long opset)
    {
        OnnxProto.NodeProto? Sole(string name) =>
            !outputs.Contains(name) && consumers.TryGetValue(name, out var list) && list.Count == 1 && list[0].Domain.Length == 0 && list[0].Input[0] == name ? list[0] : null;
        if (Sole(q1.Output[0]) is not { OpType: "DequantizeLinear" } dq || Sole(dq.Output[0]) is not { OpType: "Clip" or "Relu" } clip
            || Sole(clip.Output[0]) is not { OpType: "QuantizeLinear" } q2)
        {
            return null;
        }

        // The pair's and the last QuantizeLinear's constants (each input past the first, where an initializer of one value).
        var constants = new[] { q1, dq, clip, q2 }.SelectMany(n => n.Input.Skip(1)).Where(i => inits.TryGetValue(i, out var t) && Count(t) == 1).Distinct()
            .ToDictionary(i => i, i => HostTensor.FromProto(inits[i]), StringComparer.Ordinal);
        if (GraphCompiler.QdqRounding(q1, dq, constants) is not { } first || GraphCompiler.QdqRounding(q2, null, constants) is not { } last
            || clip.Input.Skip(1).Any(i => i.Length > 0 && !constants.ContainsKey(i)))
        {
            return null;
        }

        var bounds = GraphCompiler.ClipBounds(opset, clip.Input.Count > 1 && clip.Input[1].Length > 0 ? constants[clip.Input[1]] : null, clip.Input.Count > 2 && clip.Input[2].Length > 0 ? constants[clip.Input[2]] : null, new NodeAttributes(clip));
        var (low, high) = clip.OpType == "Relu" ? (0.0, double.PositiveInfinity) : (bounds("min", 0), bounds("max", 0));
        if (low > 0)
        {
            return null;
        }

        // The exact chain clamps the convolution's value to q1's range and the Clip's; q2's saturation (and a ReLU at
        // 0) gives a bound where it is reached within half a step of q2.
        static (double Low, double High) RealRange(KernelSource.QuantRounding r) => ((r.Low - r.Zero) * r.Scale, (r.High - r.Zero) * r.Scale);
        var (low1, high1) = RealRange(first.Rounding);
        var (low2, high2) = RealRange(last.Rounding);
        var margin = 0.49 * last.Rounding.Scale;
        var top = Math.Min(high, high1);
        var bottom = low == 0 ? 0 : Math.Max(low, low1);
        var clampHigh = top >= high2 - margin ? double.PositiveInfinity : top;
        var clampLow = low == 0 || bottom <= low2 + margin ? double.NegativeInfinity : bottom;
        (double, double)? clamp = double.IsInfinity(clampHigh) && double.IsInfinity(clampLow) ? null : (clampLow, clampHigh);
        return ([q1, dq, clip], low == 0 ? clip : null, q2, clamp);
    }

    /// <summary>Why a QuantizeLinear or DequantizeLinear is not per tensor with a float32 scale and an 8-bit zero point, or null.</summary>
    private static string? PerTensor(OnnxProto.NodeProto q, Dictionary<string, OnnxProto.TensorProto> inits)
    {
        if (Attr(q, "block_size", 0) != 0)
        {
            return "blocked quantization";
        }

        if (q.Input.Count < 2 || !inits.TryGetValue(q.Input[1], out var scale) || (ElementType)scale.DataType != ElementType.Float || Count(scale) != 1)
        {
            return "its scale is not one float32 initializer";
        }

        if (q.Input.Count < 3 || q.Input[2].Length == 0)
        {
            // Without a zero point a QuantizeLinear writes uint8 (unless output_dtype says otherwise); a DequantizeLinear's input type is unknown here.
            return q.OpType == "QuantizeLinear" && Attr(q, "output_dtype", 0) == 0 ? null : "no zero point";
        }

        if (!inits.TryGetValue(q.Input[2], out var zp) || Count(zp) != 1)
        {
            return "its zero point is not one initializer";
        }

        return (ElementType)zp.DataType is ElementType.UInt8 or ElementType.Int8 ? null : $"{((ElementType)zp.DataType).ShortName()} zero point (uint8 or int8 only)";
    }

    /// <summary>An initializer, or the output of DequantizeLinear nodes over initializers (a QDQ bias).</summary>
    private static bool Constant(string name, Dictionary<string, OnnxProto.TensorProto> inits, Dictionary<string, OnnxProto.NodeProto> producers) =>
        inits.ContainsKey(name) || (producers.TryGetValue(name, out var p) && p.OpType is "DequantizeLinear" or "Identity" or "Cast" && p.Input.Where(i => i.Length > 0).All(i => Constant(i, inits, producers)));

    private static long Count(OnnxProto.TensorProto t) => t.Dims.Aggregate(1L, (a, b) => a * b);

    private static long Attr(OnnxProto.NodeProto n, string name, long fallback) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    private static long[]? Ints(OnnxProto.NodeProto n, string name) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? [.. a.Ints] : null;
}

/// <summary>Where an int8 graph problem without a stored choice of its own looks for one at another batch size (<see cref="Int8Layers.GraphChoicesSwitch"/>).</summary>
internal enum Int8GraphChoices
{
    /// <summary>The nearest batch size with a stored choice (by ratio: b=64 takes b=32 before b=128) within a factor of 4; farther, a search.</summary>
    Nearest,

    /// <summary>The nearest batch size of its own octave (33-64 share one); a new octave's first size is searched.</summary>
    Octave,

    /// <summary>None: every batch size is searched.</summary>
    Exact,
}
