using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Makes a model exported at batch 1 batchable: the first axis of inputs and outputs becomes the symbol 'batch', and Reshape constants that bake in the batch of 1 copy it (0) instead. Checked by running batch 2 against two batch-1 runs.</summary>
public sealed class DynamicBatch : IModelTransform
{
    /// <summary>The symbol given to the batch axis.</summary>
    public const string Symbol = "batch";

    /// <inheritdoc/>
    public string Name => "dynamic-batch";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var inits = GraphSurgery.Initializers(graph);
        var inputs = graph.Input.Where(i => !inits.ContainsKey(i.Name)).ToList();
        var changedIo = 0;
        foreach (var v in inputs.Concat(graph.Output))
        {
            var dims = v.Type?.TensorType?.Shape?.Dim;
            if (dims is null || dims.Count == 0)
            {
                throw new BatchwiseException($"--dynamic-batch: '{v.Name}' of '{model.Name}' has no declared shape, so its batch axis is unknown", "Re-export the model with shapes on its inputs and outputs.");
            }

            if (dims[0].ValueCase == OnnxProto.TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue)
            {
                if (dims[0].DimValue != 1)
                {
                    throw new BatchwiseException($"--dynamic-batch: '{v.Name}' has its first axis fixed at {dims[0].DimValue}, not 1; only batch-1 exports are rewritten", "Re-export the model with a dynamic batch axis (torch.onnx.export dynamic_axes).");
                }

                dims[0] = new OnnxProto.TensorShapeProto.Types.Dimension { DimParam = Symbol };
                changedIo++;
            }
        }

        var names = GraphSurgery.Names(graph);
        var reshapes = 0;
        foreach (var node in graph.Node.Where(n => n.OpType == "Reshape"))
        {
            if (!inits.TryGetValue(node.Input[1], out var shapeTensor))
            {
                continue;
            }

            var shape = shapeTensor.ToInt64s();
            if (shape.Length > 0 && shape[0] == 1 && GraphSurgery.Int(node, "allowzero", 0) == 0)
            {
                // 0 = copy the input's first axis, which is the batch once the input is batched.
                shape[0] = 0;
                var name = GraphSurgery.Unique(names, node.Input[1] + "_batch");
                graph.Initializer.Add(GraphSurgery.Int64Tensor(name, [shape.Length], shape));
                node.Input[1] = name;
                reshapes++;
            }
        }

        graph.ValueInfo.Clear();
        new DeadNodeRemoval().Apply(model);
        Check(model);
        return $"batch axis made dynamic on {changedIo} inputs/outputs; {reshapes} Reshape constants rewritten to copy the batch";
    }

    // Batch 2 must equal two batch-1 runs, sample by sample: a graph that mixes samples (a Reshape that folds the batch into features) fails here.
    private static void Check(OnnxModel model)
    {
        try
        {
            using var session = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "basic" });
            var pair = SeededInputs.Create(model, 2, seed: 7);
            var both = session.Run(pair);
            for (var sample = 0; sample < 2; sample++)
            {
                var single = pair.Select(t => Slice(t, sample)).ToList();
                var one = session.Run(single);
                for (var o = 0; o < one.Count; o++)
                {
                    var expected = one[o].ToDoubles();
                    var got = both[o].ToDoubles();
                    var offset = sample * expected.Length;
                    for (var i = 0; i < expected.Length; i++)
                    {
                        if (Math.Abs(expected[i] - got[offset + i]) > 1e-3 * (1 + Math.Abs(expected[i])))
                        {
                            throw new BatchwiseException($"--dynamic-batch: at batch 2 output '{session.Outputs[o].Name}' differs from two batch-1 runs; the graph mixes samples (a constant that bakes in the batch)", "Re-export the model with a dynamic batch axis.");
                        }
                    }
                }
            }
        }
        catch (BatchwiseException e) when (!e.Message.StartsWith("--dynamic-batch", StringComparison.Ordinal))
        {
            var node = OrtFailure.NodeIn(OrtFailure.AllMessages(e)) ?? "a node";
            throw new BatchwiseException($"--dynamic-batch: '{model.Name}' cannot run at batch 2: {node} hard-codes the batch ({OrtFailure.Detail(e)})", "Re-export the model with a dynamic batch axis (torch.onnx.export dynamic_axes).", e);
        }
    }

    private static Tensor Slice(Tensor t, int sample)
    {
        var shape = (long[])t.Shape.Clone();
        shape[0] = 1;
        var bytes = t.Data.Length / (int)t.Shape[0];
        var result = Tensor.Zeros(t.ElementType, shape);
        Array.Copy(t.Data, sample * bytes, result.Data, 0, bytes);
        return result;
    }
}
