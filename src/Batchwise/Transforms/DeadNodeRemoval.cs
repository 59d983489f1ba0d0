using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>Removes nodes whose outputs reach no graph output, then initializers and value infos nothing reads.</summary>
public sealed class DeadNodeRemoval : IModelTransform
{
    /// <inheritdoc/>
    public string Name => "dead-node-removal";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var live = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var keep = new List<global::Onnx.NodeProto>();
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (node.Output.Any(live.Contains))
            {
                keep.Add(node);
                live.UnionWith(node.Input.Where(x => x.Length > 0));
            }
        }

        keep.Reverse();
        var removedNodes = graph.Node.Count - keep.Count;
        graph.Node.Clear();
        graph.Node.AddRange(keep);

        var deadInits = graph.Initializer.Where(t => !live.Contains(t.Name)).ToList();
        foreach (var t in deadInits)
        {
            graph.Initializer.Remove(t);
        }

        // Initializers listed as graph inputs (old exporters) go with them.
        foreach (var input in graph.Input.Where(i => deadInits.Any(d => d.Name == i.Name)).ToList())
        {
            graph.Input.Remove(input);
        }

        var produced = graph.Node.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        foreach (var vi in graph.ValueInfo.Where(v => !produced.Contains(v.Name)).ToList())
        {
            graph.ValueInfo.Remove(vi);
        }

        return $"removed {removedNodes} dead nodes and {deadInits.Count} unused initializers";
    }
}
