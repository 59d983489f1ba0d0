using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The order a plan lowers the graph's nodes in, where independent branches are to run beside each other
/// (<see cref="StepLanes"/>): a residual block's shortcut convolution (a ResNet's downsample: Conv, or Conv then
/// BatchNormalization, from the block's input straight to the Add) moves to just before the block's first node. Exports
/// put it after the block's last convolution, which then takes the Add, so the shortcut could not start before the
/// whole block had run; planned first, it runs on the side lane beside the block and the block's last convolution
/// takes the Add (and the shortcut's bias) in its epilogue instead.
/// </summary>
internal static class BranchOrder
{
    /// <summary>The nodes of <paramref name="graph"/> in the order to plan them: the graph's own with the shortcuts moved.</summary>
    public static IReadOnlyList<OnnxProto.NodeProto> ShortcutsFirst(OnnxProto.GraphProto graph, IReadOnlyDictionary<string, List<OnnxProto.NodeProto>> consumers, IReadOnlyDictionary<string, OnnxProto.NodeProto> producers)
    {
        var nodes = graph.Node;
        var position = new Dictionary<OnnxProto.NodeProto, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < nodes.Count; i++)
        {
            position[nodes[i]] = i;
        }

        var constants = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var before = new Dictionary<int, List<OnnxProto.NodeProto>>();
        var moved = new HashSet<OnnxProto.NodeProto>(ReferenceEqualityComparer.Instance);
        OnnxProto.NodeProto? Producer(string name) => producers.GetValueOrDefault(name);
        bool OnlyConsumer(string value, OnnxProto.NodeProto node) => consumers.TryGetValue(value, out var users) && users.Count == 1 && ReferenceEquals(users[0], node);

        // A convolution (with its BatchNormalization) whose output only the node after it reads.
        List<OnnxProto.NodeProto>? ConvChain(string value, OnnxProto.NodeProto reader)
        {
            if (Producer(value) is not { } last || !OnlyConsumer(value, reader) || moved.Contains(last))
            {
                return null;
            }

            if (last.OpType == "BatchNormalization" && last.Input.Count >= 1 && Producer(last.Input[0]) is { OpType: "Conv" } conv && OnlyConsumer(last.Input[0], last))
            {
                return [conv, last];
            }

            return last.OpType == "Conv" ? [last] : null;
        }

        foreach (var add in nodes.Where(n => n is { OpType: "Add", Input.Count: 2, Output.Count: 1 }))
        {
            foreach (var side in new[] { 0, 1 })
            {
                var shortcut = ConvChain(add.Input[side], add);
                var block = ConvChain(add.Input[1 - side], add);
                if (shortcut is null || block is null || position[shortcut[0]] < position[block[^1]])
                {
                    continue; // not two convolution branches, or the shortcut is planned first already
                }

                var conv = shortcut[0];
                var x = conv.Input.Count > 0 ? conv.Input[0] : string.Empty;
                var weightsOnly = shortcut.SelectMany(n => n.Input.Skip(1)).All(i => i.Length == 0 || constants.Contains(i));
                if (x.Length == 0 || constants.Contains(x) || !weightsOnly || !consumers.TryGetValue(x, out var readers) || readers.Count < 2)
                {
                    continue;
                }

                var first = readers.Min(r => position[r]);
                if (first >= position[conv])
                {
                    continue;
                }

                if (!before.TryGetValue(first, out var list))
                {
                    before[first] = list = [];
                }

                list.AddRange(shortcut);
                moved.UnionWith(shortcut);
                break;
            }
        }

        if (moved.Count == 0)
        {
            return nodes;
        }

        var order = new List<OnnxProto.NodeProto>(nodes.Count);
        for (var i = 0; i < nodes.Count; i++)
        {
            if (before.TryGetValue(i, out var list))
            {
                order.AddRange(list);
            }

            if (!moved.Contains(nodes[i]))
            {
                order.Add(nodes[i]);
            }
        }

        return order;
    }
}
