using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>Folds an inference-mode BatchNormalization that follows a Conv into the Conv's weights and bias: w' = w·γ/√(σ²+ε), b' = (b−μ)·γ/√(σ²+ε) + β.</summary>
public sealed class BatchNormFolding : IModelTransform
{
    /// <inheritdoc/>
    public string Name => "batchnorm-folding";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var inits = GraphSurgery.Initializers(graph);
        var consumers = GraphSurgery.Consumers(graph);
        var producers = GraphSurgery.Producers(graph);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var names = GraphSurgery.Names(graph);
        var folded = 0;
        foreach (var bn in graph.Node.Where(n => n.OpType == "BatchNormalization").ToList())
        {
            if (bn.Output.Skip(1).Any(o => o.Length > 0) || !producers.TryGetValue(bn.Input[0], out var conv) || conv.OpType != "Conv"
                || consumers[bn.Input[0]].Count != 1 || outputs.Contains(bn.Input[0]) || GraphSurgery.Int(bn, "training_mode", 0) != 0
                || !bn.Input.Skip(1).All(inits.ContainsKey) || !inits.TryGetValue(conv.Input[1], out var weight)
                || (conv.Input.Count > 2 && conv.Input[2].Length > 0 && !inits.ContainsKey(conv.Input[2]))
                || GraphSurgery.TypeOf(weight) != ElementType.Float)
            {
                continue;
            }

            var epsilon = GraphSurgery.Float(bn, "epsilon", 1e-5f);
            var gamma = inits[bn.Input[1]].ToFloats();
            var beta = inits[bn.Input[2]].ToFloats();
            var mean = inits[bn.Input[3]].ToFloats();
            var variance = inits[bn.Input[4]].ToFloats();
            var w = weight.ToFloats();
            var outChannels = weight.Dims[0];
            if (gamma.Length != outChannels)
            {
                continue;
            }

            var perChannel = w.Length / outChannels;
            var hasBias = conv.Input.Count > 2 && conv.Input[2].Length > 0;
            var b = hasBias ? inits[conv.Input[2]].ToFloats() : new float[outChannels];
            var newW = new float[w.Length];
            var newB = new float[outChannels];
            for (var c = 0; c < outChannels; c++)
            {
                var scale = gamma[c] / MathF.Sqrt(variance[c] + epsilon);
                for (var i = 0; i < perChannel; i++)
                {
                    newW[(c * perChannel) + i] = w[(c * perChannel) + i] * scale;
                }

                newB[c] = ((b[c] - mean[c]) * scale) + beta[c];
            }

            // New initializers (a weight may be shared by another Conv, which must keep the original).
            var wName = GraphSurgery.Unique(names, conv.Input[1] + "_bnfolded");
            graph.Initializer.Add(GraphSurgery.FloatTensor(wName, weight.Dims.ToArray(), newW));
            var bName = GraphSurgery.Unique(names, (hasBias ? conv.Input[2] : conv.Input[1]) + "_bias_bnfolded");
            graph.Initializer.Add(GraphSurgery.FloatTensor(bName, [outChannels], newB));
            conv.Input[1] = wName;
            if (hasBias)
            {
                conv.Input[2] = bName;
            }
            else
            {
                conv.Input.Add(bName);
            }

            // The Conv now writes the BN's output; the BN goes.
            conv.Output[0] = bn.Output[0];
            graph.Node.Remove(bn);
            folded++;
        }

        new DeadNodeRemoval().Apply(model);
        return $"folded {folded} BatchNormalization nodes into Conv weights";
    }
}
