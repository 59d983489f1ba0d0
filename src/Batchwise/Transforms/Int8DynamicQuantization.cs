using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Dynamic int8 quantization for MatMul-heavy models (transformers): weights of MatMul and Gemm become int8 per output column; activations are quantized at run time (DynamicQuantizeLinear -> MatMulInteger -> rescale), so no calibration is needed.</summary>
public sealed class Int8DynamicQuantization : IModelTransform
{
    /// <summary>Weights in 7 bits (see <see cref="Int8Weights.ReduceRangeByDefault"/>); by default where this CPU lacks VNNI.</summary>
    public bool ReduceRange { get; init; } = Int8Weights.ReduceRangeByDefault;

    /// <inheritdoc/>
    public string Name => "int8-dynamic";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Opset < 11)
        {
            throw new BatchwiseException($"--int8-dynamic needs opset 11 or newer (DynamicQuantizeLinear); '{model.Name}' uses opset {model.Opset}", "Convert it first with OpsetConversion(11) (`batchwise optimize --int8-dynamic` does this by itself).");
        }

        var graph = model.Graph;
        var inits = GraphSurgery.Initializers(graph);
        var producers = GraphSurgery.Producers(graph);
        var names = GraphSurgery.Names(graph);
        var quantizedInputs = new Dictionary<string, (string Q, string Scale, string Zero)>(StringComparer.Ordinal);
        var nodes = new List<OnnxProto.NodeProto>();
        var count = 0;
        foreach (var n in graph.Node)
        {
            if (!IsTarget(n, inits, producers, out var weight))
            {
                nodes.Add(n);
                continue;
            }

            // Weight as [in, out] int8, symmetric per output column.
            var w = weight.ToFloats();
            long rows = weight.Dims[0], cols = weight.Dims[1];
            var transposed = n.OpType == "Gemm" && GraphSurgery.Int(n, "transB", 0) == 1;
            long inF = transposed ? cols : rows, outF = transposed ? rows : cols;
            var kn = new float[w.Length];
            for (var r = 0; r < rows; r++)
            {
                for (var c = 0; c < cols; c++)
                {
                    kn[transposed ? (c * outF) + r : (r * cols) + c] = w[(r * cols) + c];
                }
            }

            var (q, scales) = Int8Weights.Quantize(kn, (int)outF, i => (int)(i % outF), ReduceRange);

            var qw = GraphSurgery.Unique(names, weight.Name + "_int8");
            var ws = GraphSurgery.Unique(names, weight.Name + "_scale");
            var wz = GraphSurgery.Unique(names, weight.Name + "_zero_point");
            graph.Initializer.Add(GraphSurgery.RawTensor<sbyte>(qw, ElementType.Int8, [inF, outF], q));
            graph.Initializer.Add(GraphSurgery.FloatTensor(ws, [outF], scales));
            graph.Initializer.Add(GraphSurgery.RawTensor<sbyte>(wz, ElementType.Int8, [], [0]));

            var x = n.Input[0];
            if (!quantizedInputs.TryGetValue(x, out var xq))
            {
                xq = (GraphSurgery.Unique(names, x + "_quantized"), GraphSurgery.Unique(names, x + "_scale"), GraphSurgery.Unique(names, x + "_zero_point"));
                nodes.Add(GraphSurgery.Node("DynamicQuantizeLinear", GraphSurgery.Unique(names, x + "_DynamicQuantizeLinear"), [x], [xq.Q, xq.Scale, xq.Zero]));
                quantizedInputs[x] = xq;
            }

            var stem = string.IsNullOrEmpty(n.Name) ? n.Output[0] : n.Name;
            var acc = GraphSurgery.Unique(names, stem + "_int32");
            var accF = GraphSurgery.Unique(names, stem + "_int32_float");
            var scaled = GraphSurgery.Unique(names, stem + "_scaled");
            var hasBias = n.OpType == "Gemm" && n.Input.Count > 2 && n.Input[2].Length > 0;
            var result = hasBias ? GraphSurgery.Unique(names, stem + "_nobias") : n.Output[0];
            var combined = GraphSurgery.Unique(names, stem + "_combined_scale");
            nodes.Add(GraphSurgery.Node("MatMulInteger", GraphSurgery.Unique(names, stem + "_MatMulInteger"), [xq.Q, qw, xq.Zero, wz], [acc]));
            nodes.Add(GraphSurgery.Node("Cast", GraphSurgery.Unique(names, stem + "_Cast"), [acc], [accF], GraphSurgery.IntAttr("to", (long)ElementType.Float)));
            nodes.Add(GraphSurgery.Node("Mul", GraphSurgery.Unique(names, stem + "_ScaleMul"), [xq.Scale, ws], [combined]));
            nodes.Add(GraphSurgery.Node("Mul", GraphSurgery.Unique(names, stem + "_Rescale"), [accF, combined], [hasBias ? result : scaled]));
            if (hasBias)
            {
                nodes.Add(GraphSurgery.Node("Add", GraphSurgery.Unique(names, stem + "_Bias"), [result, n.Input[2]], [n.Output[0]]));
            }
            else
            {
                nodes[^1].Output[0] = n.Output[0];
            }

            count++;
        }

        if (count == 0)
        {
            throw new BatchwiseException($"--int8-dynamic: '{model.Name}' has no MatMul or Gemm with a 2-D float32 weight (or float16 weight cast to float32)", "Use --int8 (static QDQ) for convolutional models.");
        }

        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        graph.ValueInfo.Clear();
        new DeadNodeRemoval().Apply(model);
        model.Validate();
        return $"{count} MatMul/Gemm nodes to MatMulInteger (weights int8 per column{(ReduceRange ? " in 7 bits, as this CPU lacks VNNI" : string.Empty)}, activations quantized at run time)";
    }

    // MatMul/Gemm with a 2-D float32 weight, or a float16 one behind a Cast (fp16-weight exports).
    private static bool IsTarget(OnnxProto.NodeProto n, Dictionary<string, OnnxProto.TensorProto> inits, Dictionary<string, OnnxProto.NodeProto> producers, out OnnxProto.TensorProto weight)
    {
        weight = null!;
        if (n.Domain.Length != 0 || (n.OpType != "MatMul" && n.OpType != "Gemm") || n.Input.Count < 2 || inits.ContainsKey(n.Input[0])
            || GraphSurgery.FloatWeight(n.Input[1], inits, producers) is not { } w || w.Dims.Count != 2)
        {
            return false;
        }

        if (n.OpType == "Gemm" && (GraphSurgery.Int(n, "transA", 0) != 0 || GraphSurgery.Float(n, "alpha", 1f) != 1f || GraphSurgery.Float(n, "beta", 1f) != 1f
            || (n.Input.Count > 2 && n.Input[2].Length > 0 && GraphSurgery.FloatWeight(n.Input[2], inits, producers) is null)))
        {
            return false;
        }

        weight = w;
        return true;
    }
}
