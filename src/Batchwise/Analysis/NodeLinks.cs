using Batchwise.Onnx;

namespace Batchwise.Analysis;

/// <summary>
/// How a graph's nodes connect, by node index: which node produces each value, which nodes read it, and which values
/// are graph outputs (what the cost passes walk when they decide what fuses).
/// </summary>
/// <param name="Producer">The index of the node that produces each value.</param>
/// <param name="Consumers">The indices of the nodes that read each value (once per input that names it).</param>
/// <param name="Outputs">The graph's output names.</param>
internal sealed record NodeLinks(Dictionary<string, int> Producer, ILookup<string, int> Consumers, HashSet<string> Outputs)
{
    /// <summary>The links of <paramref name="model"/>'s graph.</summary>
    public static NodeLinks Of(OnnxModel model)
    {
        var nodes = model.Graph.Node;
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < nodes.Count; i++)
        {
            foreach (var o in nodes[i].Output)
            {
                producer[o] = i;
            }
        }

        var consumers = nodes.SelectMany((n, i) => n.Input.Select(x => (x, i))).ToLookup(p => p.x, p => p.i, StringComparer.Ordinal);
        return new NodeLinks(producer, consumers, model.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal));
    }
}
