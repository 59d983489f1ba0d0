using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Runs a model in ONNX Runtime with every intermediate value exposed as an output: their shapes, types and values (for calibration, cost counting and type checks).</summary>
public static class ModelProbe
{
    /// <summary>Runs <paramref name="model"/> on <paramref name="inputs"/> and returns every graph input, node output and graph output by name; <paramref name="only"/> limits which values are kept.</summary>
    public static Dictionary<string, Tensor> Run(OnnxModel model, IReadOnlyList<Tensor> inputs, ISet<string>? only = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        var proto = model.Proto.Clone();
        var graph = proto.Graph;
        var declared = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            foreach (var o in node.Output)
            {
                if (o.Length > 0 && !declared.Contains(o) && (only is null || only.Contains(o)))
                {
                    // ONNX Runtime infers the type of an output declared without one.
                    graph.Output.Add(new OnnxProto.ValueInfoProto { Name = o });
                    declared.Add(o);
                }
            }
        }

        var probe = OnnxModel.FromProto(proto, model.Name + "-probe");
        using var session = new OrtEngine().Load(probe, new EngineOptions { GraphOptimization = "disabled" });
        var outputs = session.Run(inputs);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        for (var i = 0; i < inputs.Count && i < session.Inputs.Count; i++)
        {
            result[session.Inputs[i].Name] = inputs[i];
        }

        for (var i = 0; i < outputs.Count; i++)
        {
            result[session.Outputs[i].Name] = outputs[i];
        }

        return result;
    }
}
