using Batchwise.Onnx;
using Batchwise.Operators;

namespace Batchwise.Analysis;

/// <summary>
/// Every layer's work for one model at one input size, at any batch size: FLOPs, bytes and GEMM M/N/K
/// per layer, scaled by the batch (activations and N grow with it, weights do not).
/// </summary>
public sealed class ModelWork
{
    private readonly IReadOnlyList<LayerTemplate> _layers;

    private ModelWork(string modelName, string inputDescription, IReadOnlyList<LayerTemplate> layers, IReadOnlyList<string>? uncosted = null)
    {
        ModelName = modelName;
        InputDescription = inputDescription;
        _layers = layers;
        Uncosted = uncosted ?? [];
    }

    /// <summary>Layers that could not be costed (an operator Batchwise cannot infer, and what reads its outputs), each as "Op 'name': why"; they count as zero work.</summary>
    public IReadOnlyList<string> Uncosted { get; }

    /// <summary>The model's name.</summary>
    public string ModelName { get; }

    /// <summary>Input shapes at batch 1, for reports.</summary>
    public string InputDescription { get; }

    /// <summary>
    /// The graph's float32 inputs and outputs with their elements per sample: a half-precision engine converts each with
    /// one kernel on the way in and out (empty where not known, as for a model built from layers).
    /// </summary>
    public IReadOnlyList<BoundaryTensor> FloatBoundaries { get; private init; } = [];

    /// <summary>Number of layers (graph nodes).</summary>
    public int LayerCount => _layers.Count;

    /// <summary>A layer's GEMM at batch 2 when only batch 1 is given: N doubles for a convolution, the rows otherwise.</summary>
    private static GemmShape? Doubled(LayerWork w) => w.Gemm is not { } g ? null
        : w.OpType is "Conv" or "ConvTranspose" ? g with { N = 2 * g.N }
        : g with { M = 2 * g.M };

    /// <summary>The GEMM view at a batch: each dimension that doubled from batch 1 to batch 2 scales with the batch.</summary>
    private static GemmShape? ScaleGemm(LayerTemplate l, int batchSize)
    {
        if (l.GemmAtBatchOne is not { } g)
        {
            return null;
        }

        var two = l.GemmAtBatchTwo ?? g;
        long Scale(long one, long twice) => twice == 2 * one && one > 0 ? one * batchSize : one;
        return g with { M = Scale(g.M, two.M), N = Scale(g.N, two.N), K = Scale(g.K, two.K), BatchCount = Scale(g.BatchCount, two.BatchCount) };
    }

    /// <summary>
    /// One layer at batch 1: fixed bytes (weights) and per-sample FLOPs, activation bytes and N; the routine that runs it;
    /// in a quantized model its role and the bytes it would move in float (<see cref="AsFloat"/>).
    /// </summary>
    internal sealed record LayerTemplate(string Name, string OpType, double FlopsPerSample, double ActivationBytesPerSample, double FixedBytes, GemmShape? GemmAtBatchOne, GemmShape? GemmAtBatchTwo, long? ParallelPerSample, bool LaunchesKernel, LayerKind Kind = LayerKind.Other, QuantizedRole Role = QuantizedRole.Float, double FloatActivationBytesPerSample = 0, double FloatFixedBytes = 0, SpatialReduction? Reduction = null);

    /// <summary>True when some layer runs in int8 (a QDQ or dynamic-int8 model, or a float model quantized for --precision int8).</summary>
    public bool HasInt8 => _layers.Any(l => l.Role == QuantizedRole.Int8);

    /// <summary>Every layer's work at <paramref name="batchSize"/>.</summary>
    public IReadOnlyList<LayerWork> At(int batchSize) => At(batchSize, channelsLast: false);

    /// <summary>
    /// Every layer's work at <paramref name="batchSize"/>; with <paramref name="channelsLast"/> (the cuda engine in half
    /// precision) a spatial reduction is the engine's column reduction, its memory round trips counted (<see cref="SpatialReduction"/>).
    /// </summary>
    public IReadOnlyList<LayerWork> At(int batchSize, bool channelsLast) => _layers
        .Select(l => new LayerWork(l.Name, l.OpType, l.FlopsPerSample * batchSize, l.FixedBytes + (l.ActivationBytesPerSample * batchSize), ScaleGemm(l, batchSize), l.ParallelPerSample * batchSize, l.LaunchesKernel, l.Kind, l.Role, channelsLast && l.Reduction is { } r ? r.LatencyRounds(batchSize) : 1, l.FixedBytes, l.OpType is "Conv" or "ConvTranspose" ? l.ParallelPerSample : null))
        .ToList();

    /// <summary>
    /// The same model in float, for what int8 gains: int8 layers as the float layers they replace (float bytes, the
    /// float ceiling), quantize and dequantize nodes gone; a float model unchanged.
    /// </summary>
    public ModelWork AsFloat() => !_layers.Any(l => l.Role != QuantizedRole.Float) ? this : new ModelWork(
        ModelName,
        InputDescription,
        _layers.Where(l => l.Role is QuantizedRole.Float or QuantizedRole.Int8)
            .Select(l => l.Role == QuantizedRole.Int8 ? l with { Role = QuantizedRole.Float, ActivationBytesPerSample = l.FloatActivationBytesPerSample, FixedBytes = l.FloatFixedBytes } : l)
            .ToList(),
        Uncosted)
    { FloatBoundaries = FloatBoundaries };

    /// <summary>Builds from per-layer work at batch 1 and the weights each layer reads (for tests and other cost models).</summary>
    public static ModelWork FromLayers(string modelName, string inputDescription, IEnumerable<(LayerWork AtBatchOne, double WeightBytes)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        return new ModelWork(modelName, inputDescription, layers
            .Select(l => new LayerTemplate(l.AtBatchOne.Name, l.AtBatchOne.OpType, l.AtBatchOne.Flops, Math.Max(0, l.AtBatchOne.Bytes - l.WeightBytes), l.WeightBytes, l.AtBatchOne.Gemm, Doubled(l.AtBatchOne), l.AtBatchOne.ParallelSize, l.AtBatchOne.LaunchesKernel, l.AtBatchOne.Kind, l.AtBatchOne.Role, 4 * Math.Max(0, l.AtBatchOne.Bytes - l.WeightBytes), 4 * l.WeightBytes))
            .ToList());
    }

    /// <summary>
    /// Analyses a model at an input size with <see cref="CostModel"/> (static shape inference, so no run is
    /// needed): the costs at batch 1 and 2 give each layer's fixed part (weights) and per-sample part.
    /// </summary>
    /// <remarks>
    /// With <paramref name="fusesEpilogues"/> (an engine that folds BatchNormalization into convolutions, runs ReLU and a
    /// residual Add inside cuDNN's fused call, and runs any other chain of elementwise operators after a convolution or
    /// matrix product as one kernel, as the cuda engine does) such chains move no bytes of their own, except one pass over
    /// the output for a chain that cuDNN cannot take (SiLU, Clip), and launch one kernel at most.
    /// A quantized model (QDQ or dynamic int8) is costed as <see cref="QuantizedGraph"/> says it runs: int8 layers with
    /// int8 bytes, fused quantize and dequantize nodes free, the others as passes over memory.
    /// With <paramref name="fusesAttention"/> (the cuda engine in half precision) an attention block
    /// (MatMul(Q, K^T), a scalar scale, a mask Add, Softmax, MatMul(., V), a Transpose of its output) is one kernel, the
    /// head-split views that feed it cost no copy, and sibling projections of one activation that feed it run as one
    /// product (<see cref="FuseAttention"/>). With <paramref name="fusesStem"/> (the cuda engine in half precision on compute
    /// capability 8.0 or later) ResNet's stem is one kernel (<see cref="FuseStem"/>). With <paramref name="fusesAttention"/> too
    /// (half precision: a 1x1 convolution's bias in its product's epilogue) a cheap chain (BatchNormalization, Relu, Clip)
    /// after a 1x1 and read only by depthwise convolutions is applied as they load: no pass of its own. A chain after a
    /// depthwise convolution that its kernel applies before it writes (Relu, Clip, HardSwish, HardSigmoid, LeakyRelu) is
    /// free in either precision.
    /// </remarks>
    public static ModelWork Analyze(OnnxModel model, InputSize? size, bool fusesEpilogues = false, bool fusesAttention = false, bool fusesStem = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        var inputShapes = InputShapes.For(model, 1, size);
        var dims = SymbolValues(model, inputShapes);
        var floatOne = CostModel.Compute(model, 1, dims);
        var batchable = model.FindBatchAxis().IsBatchable;
        var floatTwo = batchable ? CostModel.Compute(model, 2, dims) : floatOne;
        var roles = QuantizedGraph.Roles(model);
        var one = QuantizedGraph.Lower(model, floatOne, roles);
        var two = QuantizedGraph.Lower(model, floatTwo, roles);
        var initializers = model.InitializersByName();
        var links = NodeLinks.Of(model);
        var epilogue = fusesEpilogues ? Epilogues(model, one, links, initializers, depthwiseReadsChains: fusesAttention) : new Dictionary<int, bool>();
        var pending = fusesEpilogues ? PendingElementwise(model, one, epilogue) : [];
        (double PerSample, double Fixed) Activations(NodeCost a, NodeCost b)
        {
            var perSample = batchable ? (double)(b.ActivationBytesRead + b.ActivationBytesWritten - a.ActivationBytesRead - a.ActivationBytesWritten) : a.ActivationBytesRead + a.ActivationBytesWritten;
            return (perSample, a.ActivationBytesRead + a.ActivationBytesWritten - perSample);
        }

        var layers = new List<LayerTemplate>(one.Nodes.Count);
        for (var i = 0; i < one.Nodes.Count; i++)
        {
            NodeCost a = one.Nodes[i], b = two.Nodes[i];
            var (activationPerSample, fixedActivation) = Activations(a, b);
            var (floatPerSample, floatFixed) = Activations(floatOne.Nodes[i], floatTwo.Nodes[i]);
            var integerOp = roles[i] == QuantizedRole.Int8 && floatOne.Nodes[i].Bytes == a.Bytes; // ConvInteger and kin: stored int8, 4x in float
            var launches = a.LaunchesKernel;
            var weights = (double)a.WeightBytes;
            if (pending.Contains(i))
            {
                // Computed inside the kernel of the chain's last node (which reads the chain's inputs): no kernel, no bytes of its own.
                activationPerSample = 0;
                fixedActivation = 0;
                weights = 0;
                launches = false;
            }
            else if (epilogue.TryGetValue(i, out var ownPass))
            {
                // Fused: nothing of its own, or (the end of a chain cuDNN cannot run) one read and write of its output.
                var outBytes = (double)Math.Max(0, batchable ? b.ActivationBytesWritten - a.ActivationBytesWritten : a.ActivationBytesWritten);
                activationPerSample = ownPass ? 2 * outBytes : 0;
                fixedActivation = 0;
                weights = 0; // BN's vectors are folded into the convolution's weights; a bias is read with the pass
                launches = ownPass;
            }

            layers.Add(new LayerTemplate(
                a.Name,
                a.OpType,
                a.Flops,
                activationPerSample,
                weights + Math.Max(0, fixedActivation),
                a.Gemm,
                b.Gemm,
                ParallelPerSample(a),
                launches,
                LayerRates.KindOf(model.Graph.Node[i], initializers),
                roles[i],
                (integerOp ? 4 : 1) * floatPerSample,
                (integerOp ? 4 : 1) * (a.WeightBytes + Math.Max(0, floatFixed)),
                fusesEpilogues && launches ? SpatialReductionOf(model, i, one, links.Producer, initializers) : null));
        }

        if (fusesAttention)
        {
            FuseAttention(model, one, two, batchable, layers);
        }

        var boundaries = Boundaries(model, inputShapes, one);
        if (fusesStem && FuseStem(model, inputShapes, one, links, initializers, layers) is { } stemInput)
        {
            boundaries.RemoveAll(t => t.IsInput && t.Name == stemInput);
        }

        return new ModelWork(model.Name, InputShapes.Describe(model, size), layers, [.. one.Uncosted.Select(n => $"{n.OpType} '{n.Name}': {n.Uncosted}")])
        {
            FloatBoundaries = boundaries,
        };
    }

    /// <summary>The float32 graph inputs (their shapes at batch 1) and outputs (the shape of the node output that is one) with their elements per sample.</summary>
    private static List<BoundaryTensor> Boundaries(OnnxModel model, IReadOnlyList<long[]> inputs, ModelCost atBatchOne)
    {
        static double Elements(IEnumerable<long> shape) => shape.Aggregate(1.0, (a, d) => a * Math.Max(1, d));
        var list = model.Inputs.Select((spec, i) => (spec, i)).Where(x => x.spec.ElementType == ElementType.Float)
            .Select(x => new BoundaryTensor(x.spec.Name, true, Elements(inputs[x.i])))
            .ToList();
        var produced = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < model.Graph.Node.Count; i++)
        {
            if (model.Graph.Node[i].Output.Count > 0)
            {
                produced.TryAdd(model.Graph.Node[i].Output[0], i);
            }
        }

        var read = model.Graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        var constants = model.InitializersByName();
        foreach (var output in model.Outputs.Where(o => o.ElementType == ElementType.Float))
        {
            if (produced.TryGetValue(output.Name, out var i) && i < atBatchOne.Nodes.Count)
            {
                var node = model.Graph.Node[i];
                var shape = atBatchOne.Nodes[i].OutputShape;
                var oneRowGemm = node.OpType == "Gemm" && node.Domain.Length == 0 && shape.Count == 2 && shape[0] == 1 && !read.Contains(output.Name)
                    && (node.Attribute.FirstOrDefault(a => a.Name == "transA")?.I ?? 0) == 0
                    && (node.Input.Count < 3 || node.Input[2].Length == 0 || (constants.TryGetValue(node.Input[2], out var c) && c.Dims.Count == 1));
                list.Add(new BoundaryTensor(output.Name, false, Elements(shape), oneRowGemm));
            }
        }

        return list;
    }

    /// <summary>
    /// The GEMM dimension that grows with the batch, per sample: N (batch x out-H x out-W) for a convolution,
    /// the rows M x the batched count for a MatMul or Gemm (batch x sequence when the right operand is a weight).
    /// </summary>
    /// <summary>
    /// Elementwise and BatchNormalization nodes in chains after a Conv, Gemm or MatMul, by node index: true for the node
    /// that ends a chain cuDNN's fused call cannot take (it pays one pass over its output), false for the others.
    /// </summary>
    private static Dictionary<int, bool> Epilogues(OnnxModel model, ModelCost cost, NodeLinks links, IReadOnlyDictionary<string, global::Onnx.TensorProto> initializers, bool depthwiseReadsChains)
    {
        var nodes = model.Graph.Node;
        var (producer, consumers, outputs) = links;
        bool Chainable(int i) => cost.Nodes[i].Category == OpCategory.Elementwise || nodes[i].OpType == "BatchNormalization";
        var inChain = new Dictionary<int, bool>(); // node -> whether its chain so far holds an op cuDNN cannot fuse
        for (var i = 0; i < nodes.Count; i++)
        {
            if (!Chainable(i))
            {
                continue;
            }

            var feeds = nodes[i].Input.Where(producer.ContainsKey).Select(x => producer[x]).ToList();
            var afterCompute = feeds.Any(f => cost.Nodes[f].Category == OpCategory.Gemm || inChain.ContainsKey(f));
            if (afterCompute)
            {
                var foreign = nodes[i].OpType is not ("BatchNormalization" or "Relu" or "Add") || feeds.Any(f => inChain.TryGetValue(f, out var x) && x);
                inChain[i] = foreign;
            }
        }

        // A chain's last node (some consumer outside the chain, or a graph output) pays the pass when the chain needs one,
        // unless a depthwise kernel takes the chain: the cuda engine's own depthwise kernel applies the activations after
        // it before it writes (Relu, Clip, HardSwish, HardSigmoid, LeakyRelu, each the one before's sole reader) and reads
        // a chain that makes its input as it loads each element (MobileNetV2's ReLU6 after the expanding 1x1).
        bool Depthwise(int i) => LayerRates.KindOf(nodes[i], initializers) is LayerKind.DepthwiseConvolution or LayerKind.StridedDepthwiseConvolution;
        bool SoleReader(int i) => nodes[i].Input.Count > 0 && producer.TryGetValue(nodes[i].Input[0], out var f) && !outputs.Contains(nodes[i].Input[0]) && consumers[nodes[i].Input[0]].Distinct().Count() == 1 && (inChain.ContainsKey(f) || Depthwise(f));
        bool DepthwiseEpilogue(int last)
        {
            for (var at = last; ; at = producer[nodes[at].Input[0]])
            {
                if (nodes[at].OpType is not ("BatchNormalization" or "Relu" or "Clip" or "HardSwish" or "HardSigmoid" or "LeakyRelu") || !SoleReader(at))
                {
                    return false;
                }

                if (Depthwise(producer[nodes[at].Input[0]]))
                {
                    return true;
                }
            }
        }

        // As it loads, only a cheap chain (no transcendentals: it runs at every tap) over one value: after a 1x1 in half
        // precision, whose bias is in its product's epilogue (in float32 cuDNN's raw sum and the bias are two, as after a
        // spatial convolution).
        bool Cheap(int last)
        {
            var at = last;
            for (; inChain.ContainsKey(at); at = producer[nodes[at].Input[0]])
            {
                if (nodes[at].OpType is not ("BatchNormalization" or "Relu" or "Clip") || !producer.ContainsKey(nodes[at].Input[0]))
                {
                    return false;
                }
            }

            return LayerRates.KindOf(nodes[at], initializers) == LayerKind.PointwiseConvolution;
        }

        bool ReadByDepthwiseOnly(int last) => depthwiseReadsChains && Cheap(last)
            && nodes[last].Output.All(o => !outputs.Contains(o) && consumers[o].Any() && consumers[o].All(c => Depthwise(c) && nodes[c].Input[0] == o));
        return inChain.ToDictionary(
            p => p.Key,
            p => p.Value && nodes[p.Key].Output.Any(o => outputs.Contains(o) || consumers[o].Any(c => !inChain.ContainsKey(c))) && !DepthwiseEpilogue(p.Key) && !ReadByDepthwiseOnly(p.Key));
    }

    /// <summary>
    /// Elementwise nodes (outside the epilogue chains) whose every consumer is elementwise too and whose outputs are not
    /// graph outputs: a fusing engine keeps them pending and computes them in the kernel of the chain's last node (the
    /// cuda engine's elementwise chains), so they launch nothing and move no bytes of their own.
    /// </summary>
    private static HashSet<int> PendingElementwise(OnnxModel model, ModelCost cost, Dictionary<int, bool> epilogue)
    {
        var nodes = model.Graph.Node;
        var (_, consumers, outputs) = NodeLinks.Of(model);
        bool Elementwise(int i) => cost.Nodes[i].Category == OpCategory.Elementwise;
        return [.. Enumerable.Range(0, nodes.Count).Where(i => Elementwise(i) && !epilogue.ContainsKey(i)
            && nodes[i].Output.All(o => !outputs.Contains(o) && consumers[o].Any() && consumers[o].All(Elementwise)))];
    }

    /// <summary>
    /// The cuda engine's half-precision attention plan (Lowering/Attention.cs, Views.cs, SiblingProducts.cs) as costs:
    /// MatMul(Q, K^T) -> [scalar Mul or Div] -> [Add mask] -> Softmax -> MatMul(., V) [-> Transpose] is one kernel that
    /// never writes the scores or probabilities (the first product's row takes both products' FLOPs and reads Q, K and V
    /// and writes O; the rest launch nothing); the Transpose, Split, Gather and Slice views between the projections and
    /// the block are strides the kernel reads (no copy); MatMuls of one activation by constant weights of the same K
    /// whose results all feed such blocks (Q, K, V) are one GEMM over the concatenated weights (the first sibling's row
    /// takes the summed N, FLOPs and weights and reads the activation once). Identity, Dropout and Cast in the chain are skipped.
    /// </summary>
    private static void FuseAttention(OnnxModel model, ModelCost one, ModelCost two, bool batchable, List<LayerTemplate> layers)
    {
        var nodes = model.Graph.Node;
        var initializers = model.InitializersByName();
        var (producer, consumers, outputs) = NodeLinks.Of(model);
        int Sole(int i) => nodes[i].Output.Count == 1 && !outputs.Contains(nodes[i].Output[0]) && consumers[nodes[i].Output[0]].Distinct().Count() == 1 ? consumers[nodes[i].Output[0]].First() : -1;
        bool Scalar(string name) => initializers.TryGetValue(name, out var t) && t.Dims.Aggregate(1L, (a, d) => a * d) == 1;
        double PerSample(Func<NodeCost, long> bytes, int i) => batchable ? bytes(two.Nodes[i]) - bytes(one.Nodes[i]) : bytes(one.Nodes[i]);
        void Free(int i) => layers[i] = Inside(layers[i]);

        var operands = new HashSet<string>(StringComparer.Ordinal);
        for (var a = 0; a < nodes.Count; a++)
        {
            if (nodes[a].OpType != "MatMul" || nodes[a].Input.Count != 2 || nodes[a].Input.Any(initializers.ContainsKey))
            {
                continue;
            }

            var chain = new List<int>();
            var at = Sole(a);
            while (at >= 0 && (nodes[at].OpType is "Identity" or "Dropout" or "Cast"
                || (nodes[at].OpType is "Mul" or "Div" && !chain.Any(c => nodes[c].OpType is "Mul" or "Div" or "Add" or "Softmax") && nodes[at].Input.Skip(1).All(Scalar))
                || (nodes[at].OpType == "Add" && !chain.Any(c => nodes[c].OpType is "Add" or "Softmax"))
                || (nodes[at].OpType == "Softmax" && !chain.Any(c => nodes[c].OpType == "Softmax"))))
            {
                chain.Add(at);
                at = Sole(at);
            }

            if (at < 0 || nodes[at].OpType != "MatMul" || !chain.Any(c => nodes[c].OpType == "Softmax") || !producer.TryGetValue(nodes[at].Input[0], out var fed) || fed != chain[^1]
                || initializers.ContainsKey(nodes[at].Input[1]))
            {
                continue;
            }

            var b = at;
            var scores = PerSample(c => c.ActivationBytesWritten, a);
            layers[a] = layers[a] with
            {
                FlopsPerSample = layers[a].FlopsPerSample + layers[b].FlopsPerSample,
                ActivationBytesPerSample = Math.Max(0, layers[a].ActivationBytesPerSample + layers[b].ActivationBytesPerSample - (2 * scores)),
                LaunchesKernel = true,
            };
            chain.ForEach(Free);
            Free(b);
            if (Sole(b) is var t and >= 0 && nodes[t].OpType == "Transpose")
            {
                Free(t);
            }

            operands.UnionWith([nodes[a].Input[0], nodes[a].Input[1], nodes[b].Input[1]]);
        }

        // The views between a projection (and its bias Add) and the block: strides the kernel reads.
        var projections = new HashSet<int>();
        foreach (var operand in operands)
        {
            var value = operand;
            while (producer.TryGetValue(value, out var p))
            {
                if (nodes[p].OpType is "Transpose" or "Split" or "Gather" or "Slice")
                {
                    Free(p);
                }
                else if (nodes[p].OpType is not ("Reshape" or "Squeeze" or "Unsqueeze" or "Flatten")
                    && !(nodes[p].OpType == "Add" && nodes[p].Input.Any(initializers.ContainsKey)))
                {
                    if (nodes[p].OpType == "MatMul")
                    {
                        projections.Add(p);
                    }

                    break;
                }

                value = nodes[p].Input.First(x => !initializers.ContainsKey(x));
            }
        }

        // Sibling projections of one activation by constant 2-D weights of the same K: one GEMM.
        foreach (var group in projections.Where(p => initializers.TryGetValue(nodes[p].Input[1], out var w) && w.Dims.Count == 2 && one.Nodes[p].Gemm is not null)
            .GroupBy(p => (nodes[p].Input[0], initializers[nodes[p].Input[1]].Dims[0])).Where(g => g.Count() > 1))
        {
            var members = group.Order().ToList();
            var first = members[0];
            var input = PerSample(c => c.ActivationBytesRead, first);
            GemmShape? Summed(Func<LayerTemplate, GemmShape?> gemm) => gemm(layers[first]) is { } g ? g with { N = members.Sum(m => gemm(layers[m])!.N) } : null;
            layers[first] = layers[first] with
            {
                FlopsPerSample = members.Sum(m => layers[m].FlopsPerSample),
                ActivationBytesPerSample = members.Sum(m => layers[m].ActivationBytesPerSample) - ((members.Count - 1) * input),
                FixedBytes = members.Sum(m => layers[m].FixedBytes),
                GemmAtBatchOne = Summed(l => l.GemmAtBatchOne),
                GemmAtBatchTwo = Summed(l => l.GemmAtBatchTwo),
            };
            members.Skip(1).ToList().ForEach(Free);
        }
    }

    /// <summary>
    /// The cuda engine's fused stem (half precision only; the pattern and the kernel's limits are
    /// <see cref="StemPattern"/>, which the engine's planner uses too), at the input's size: one kernel that reads the
    /// input as given (4 bytes an element, no conversion kernel), computes the convolution at its rate (the same
    /// tensor-core work) and writes only the pooled output (ResNet-50 at b=256: 0.33 ms for what layer by layer is a
    /// conversion, a convolution and a pooling of 0.85 ms, session 24). A QDQ model's stem (<see cref="StemPattern.FindQuantized"/>,
    /// which the engine fuses on its int8 path since session 26) likewise, writing the pooled result in int8 and with its
    /// QuantizeLinear and DequantizeLinear nodes inside. Returns the input's name when the stem was fused, else null.
    /// </summary>
    private static string? FuseStem(OnnxModel model, IReadOnlyList<long[]> shapes, ModelCost one, NodeLinks links, IReadOnlyDictionary<string, global::Onnx.TensorProto> initializers, List<LayerTemplate> layers)
    {
        var nodes = model.Graph.Node;
        var (producer, consumers, outputs) = links;
        global::Onnx.NodeProto? Sole(string value) => !outputs.Contains(value) && consumers[value].Distinct().ToList() is [var c] ? nodes[c] : null;
        long[]? InitializerShape(string name) => initializers.TryGetValue(name, out var t) ? t.Dims.ToArray() : null;
        long[]? ConstantShape(string name) => InitializerShape(name)
            ?? (producer.TryGetValue(name, out var p) && nodes[p] is { OpType: "DequantizeLinear", Domain: "" } dq ? InitializerShape(dq.Input[0]) : null);
        foreach (var (input, i) in model.Inputs.Select((x, i) => (x, i)).Where(x => x.x.ElementType == ElementType.Float && x.x.Shape.Count == 4))
        {
            if (StemPattern.FindQuantized(input.Name, shapes[i], Sole, ConstantShape) is { } quantized)
            {
                // A QDQ model's stem (the engine's int8 path): the float32 input read as given and rounded in the kernel,
                // the pooled maximum written as int8 (bytes doubled here as the float layers' are, which the caller halves).
                var inputElements = (double)shapes[i].Skip(1).Aggregate(1L, (a, d) => a * d);
                var filter = ConstantShape(quantized.Conv.Input[1])!;
                var pooledElements = (double)filter[0] * (((quantized.OutSpatial[0] - 1) / 2) + 1) * (((quantized.OutSpatial[1] - 1) / 2) + 1);
                var qconv = producer[quantized.Conv.Output[0]];
                layers[qconv] = layers[qconv] with { ActivationBytesPerSample = (2 * 4 * inputElements) + (2 * pooledElements), LaunchesKernel = true };
                foreach (var folded in new[] { quantized.InputQuantize, quantized.InputDequantize, quantized.Relu, quantized.ConvQuantize, quantized.ConvDequantize, quantized.Pool, quantized.PoolQuantize }.OfType<global::Onnx.NodeProto>().Select(n => producer[n.Output[0]]))
                {
                    layers[folded] = Inside(layers[folded]);
                }

                return input.Name;
            }

            if (StemPattern.Find(input.Name, shapes[i], Sole, InitializerShape) is not { } stem)
            {
                continue;
            }

            var (conv, pool) = (producer[stem.Conv.Output[0]], producer[stem.Pool.Output[0]]);

            // Bytes are kept as the graph's float32 ones (the caller halves them in fp16): the input is read at 4 bytes an
            // element, so twice its graph bytes go in; the pooled output is written in half precision.
            var inputBytes = (double)one.Nodes[conv].ActivationBytesRead;
            var pooledBytes = (double)one.Nodes[pool].ActivationBytesWritten;
            layers[conv] = layers[conv] with { ActivationBytesPerSample = (2 * inputBytes) + pooledBytes, LaunchesKernel = true };
            foreach (var folded in new[] { stem.BatchNorm, stem.Relu, stem.Pool }.OfType<global::Onnx.NodeProto>().Select(n => producer[n.Output[0]]))
            {
                layers[folded] = Inside(layers[folded]);
            }

            return input.Name;
        }

        return null;
    }

    /// <summary>A layer computed inside another's kernel: no work, no bytes and no launch of its own.</summary>
    private static LayerTemplate Inside(LayerTemplate layer) =>
        layer with { FlopsPerSample = 0, ActivationBytesPerSample = 0, FixedBytes = 0, LaunchesKernel = false, FloatActivationBytesPerSample = 0, FloatFixedBytes = 0 };

    /// <summary>
    /// Node <paramref name="i"/> as a reduction over the spatial axes (2 and 3, and only those) of a computed 4-D tensor,
    /// or null: ReduceMean, ReduceSum, ReduceMax, ReduceMin and kin, axes from the attribute or a constant input.
    /// </summary>
    private static SpatialReduction? SpatialReductionOf(OnnxModel model, int i, ModelCost cost, Dictionary<string, int> producer, IReadOnlyDictionary<string, global::Onnx.TensorProto> initializers)
    {
        var node = model.Graph.Node[i];
        if (!node.OpType.StartsWith("Reduce", StringComparison.Ordinal) || node.Domain.Length > 0 || node.Input.Count == 0)
        {
            return null;
        }

        if (!producer.TryGetValue(node.Input[0], out var p) || cost.Nodes[p].OutputShape is not { Count: 4 } shape)
        {
            return null;
        }

        var axes = node.Attribute.FirstOrDefault(a => a.Name == "axes")?.Ints.ToArray()
            ?? (node.Input.Count > 1 && initializers.TryGetValue(node.Input[1], out var t) ? t.ToInt64s() : null);
        var spatial = axes?.Select(a => a < 0 ? a + 4 : a).Order().ToArray();
        return spatial is [2, 3] ? new SpatialReduction(shape[2] * shape[3], shape[1]) : null;
    }

    private static long? ParallelPerSample(NodeCost c) => c.Gemm is not { } g ? null
        : c.OpType is "Conv" or "ConvTranspose" ? g.N
        : g.M * g.BatchCount;

    /// <summary>One layer's work from explicit numbers at batch 1 (for tests and engines with cost models of their own).</summary>
    public static (LayerWork AtBatchOne, double WeightBytes) Layer(string name, string opType, double flops, double activationBytes, double weightBytes, GemmShape? gemm = null, long? parallel = null, LayerKind kind = LayerKind.Other) =>
        (new LayerWork(name, opType, flops, activationBytes + weightBytes, gemm, parallel ?? (gemm is null ? null : opType is "Conv" or "ConvTranspose" ? gemm.N : gemm.M * gemm.BatchCount), Kind: kind, WeightBytes: weightBytes), weightBytes);

    /// <summary>Values for the model's symbolic dimensions other than the batch, from the input shapes at batch 1.</summary>
    private static Dictionary<string, long> SymbolValues(OnnxModel model, IReadOnlyList<long[]> shapes)
    {
        var dims = new Dictionary<string, long>(StringComparer.Ordinal);
        for (var i = 0; i < model.Inputs.Count; i++)
        {
            var spec = model.Inputs[i];
            for (var d = 1; d < spec.Shape.Count; d++)
            {
                if (spec.Shape[d] is { IsDynamic: true, Symbol: { Length: > 0 } symbol })
                {
                    dims[symbol] = shapes[i][d];
                }
            }
        }

        return dims;
    }
}

/// <summary>A float32 graph input or output and its elements per sample (what a half-precision engine converts at the boundary).</summary>
/// <param name="Name">The graph value's name.</param>
/// <param name="IsInput">True for an input (converted to half on the way in), false for an output.</param>
/// <param name="ElementsPerSample">Elements at batch 1.</param>
/// <param name="OneRowProductAtBatchOne">
/// An output that a Gemm of one row at batch 1 writes and nothing else reads (a classifier's logits): the cuda engine's
/// small-row kernel writes it in float32 itself at batch 1, with no conversion after it.
/// </param>
public sealed record BoundaryTensor(string Name, bool IsInput, double ElementsPerSample, bool OneRowProductAtBatchOne = false);
