using Batchwise.Engines;
using Batchwise.Onnx;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Evaluates, once, every node whose inputs are all constants (initializers, Constant nodes) and stores the results as initializers. ONNX Runtime does the arithmetic, so every operator it knows folds.</summary>
public sealed class ConstantFolding : IModelTransform
{
    // Nodes that must stay: random generators (a new value each run) and quantization markers (QDQ models keep them as the format).
    private static readonly HashSet<string> Unfoldable = new(StringComparer.Ordinal)
    {
        "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    };

    /// <summary>Largest folded result kept, in elements (larger constants would bloat the file, e.g. an expanded mask).</summary>
    public long MaxElements { get; init; } = 16L << 20;

    /// <inheritdoc/>
    public string Name => "constant-folding";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var constants = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var graphInputs = model.Inputs.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        constants.ExceptWith(graphInputs); // an initializer that is also an input can be overridden at run time
        var constantNodes = 0;

        // Constant nodes become initializers.
        foreach (var node in graph.Node.Where(n => n.OpType == "Constant" && n.Domain.Length == 0).ToList())
        {
            graph.Initializer.Add(ConstantValue(node));
            constants.Add(node.Output[0]);
            graph.Node.Remove(node);
            constantNodes++;
        }

        var foldable = new List<OnnxProto.NodeProto>();
        foreach (var node in graph.Node)
        {
            if ((node.Domain.Length == 0 || node.Domain == "ai.onnx") && !Unfoldable.Contains(node.OpType) && node.Input.Count > 0
                && node.Input.All(i => i.Length == 0 || constants.Contains(i)) && node.Attribute.All(a => a.G is null && a.Graphs.Count == 0))
            {
                foldable.Add(node);
                constants.UnionWith(node.Output);
            }
        }

        if (foldable.Count == 0)
        {
            return $"converted {constantNodes} Constant nodes; nothing else to fold";
        }

        var foldedOutputs = foldable.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        var foldableSet = foldable.ToHashSet();
        var needed = graph.Node.Where(n => !foldableSet.Contains(n)).SelectMany(n => n.Input)
            .Concat(graph.Output.Select(o => o.Name))
            .Where(foldedOutputs.Contains).ToHashSet(StringComparer.Ordinal);

        // One small model: the foldable nodes over the initializers they read, their needed outputs as outputs.
        var sub = new OnnxProto.GraphProto { Name = "constants" };
        var read = foldable.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        sub.Initializer.AddRange(graph.Initializer.Where(t => read.Contains(t.Name)));
        sub.Node.AddRange(foldable);
        foreach (var name in needed)
        {
            sub.Output.Add(new OnnxProto.ValueInfoProto { Name = name });
        }

        var subModel = new OnnxProto.ModelProto { IrVersion = model.Proto.IrVersion, Graph = sub };
        subModel.OpsetImport.AddRange(model.Proto.OpsetImport);
        IReadOnlyList<Tensor> values;
        IReadOnlyList<TensorSpec> specs;
        try
        {
            using var session = new OrtEngine().Load(OnnxModel.FromProto(subModel, model.Name + "-constants"), new EngineOptions { GraphOptimization = "disabled" });
            values = session.Run([]);
            specs = session.Outputs;
        }
        catch (BatchwiseException e)
        {
            throw new BatchwiseException($"Constant folding failed while evaluating constant nodes ({string.Join(", ", foldable.Take(3).Select(GraphSurgery.Label))}...): {e.Message}", "Run without clean-up is not offered; check the model loads in ONNX Runtime.", e);
        }

        var keptNodes = new HashSet<OnnxProto.NodeProto>();
        for (var i = 0; i < values.Count; i++)
        {
            if (values[i].ElementCount > MaxElements)
            {
                // Too large to store: keep the nodes that compute it (and, transitively, their inputs stay).
                keptNodes.UnionWith(foldable.Where(n => n.Output.Contains(specs[i].Name)));
                continue;
            }

            var t = new OnnxProto.TensorProto { Name = specs[i].Name, DataType = (int)values[i].ElementType, RawData = ByteString.CopyFrom(values[i].Data) };
            t.Dims.AddRange(values[i].Shape);
            graph.Initializer.Add(t);
        }

        // Keep the producers of oversized results and everything they read.
        var stack = new Stack<OnnxProto.NodeProto>(keptNodes);
        var producers = foldable.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n, StringComparer.Ordinal);
        while (stack.Count > 0)
        {
            foreach (var input in stack.Pop().Input)
            {
                if (producers.TryGetValue(input, out var p) && keptNodes.Add(p))
                {
                    stack.Push(p);
                }
            }
        }

        var removed = 0;
        foreach (var node in foldable.Where(n => !keptNodes.Contains(n)))
        {
            graph.Node.Remove(node);
            removed++;
        }

        new DeadNodeRemoval().Apply(model);
        return $"converted {constantNodes} Constant nodes, folded {removed} nodes into initializers";
    }

    private static OnnxProto.TensorProto ConstantValue(OnnxProto.NodeProto node)
    {
        var name = node.Output[0];
        var a = node.Attribute.FirstOrDefault() ?? throw new BatchwiseException($"{GraphSurgery.Label(node)} has no value", "Re-export the model.");
        OnnxProto.TensorProto t;
        switch (a.Name)
        {
            case "value":
                t = a.T.Clone();
                break;
            case "value_float":
                t = GraphSurgery.FloatTensor(name, [], [a.F]);
                break;
            case "value_floats":
                t = GraphSurgery.FloatTensor(name, [a.Floats.Count], a.Floats.ToArray());
                break;
            case "value_int":
                t = GraphSurgery.Int64Tensor(name, [], [a.I]);
                break;
            case "value_ints":
                t = GraphSurgery.Int64Tensor(name, [a.Ints.Count], a.Ints.ToArray());
                break;
            default:
                throw new BatchwiseException($"{GraphSurgery.Label(node)} holds a '{a.Name}' value, which constant folding does not read", "Re-export the model with tensor constants.");
        }

        t.Name = name;
        return t;
    }
}
