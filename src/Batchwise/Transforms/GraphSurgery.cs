using System.Runtime.InteropServices;
using Batchwise.Onnx;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>Small, shared edits on an ONNX graph: lookups, initializers, attributes, node labels.</summary>
internal static class GraphSurgery
{
    /// <summary>How a node is named in messages: OpType 'name'.</summary>
    public static string Label(OnnxProto.NodeProto node) =>
        string.IsNullOrEmpty(node.Name) ? $"{node.OpType} (producing '{node.Output.FirstOrDefault()}')" : $"{node.OpType} '{node.Name}'";

    /// <summary>Initializers by name.</summary>
    public static Dictionary<string, OnnxProto.TensorProto> Initializers(OnnxProto.GraphProto graph)
    {
        var result = new Dictionary<string, OnnxProto.TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer)
        {
            result[t.Name] = t;
        }

        return result;
    }

    /// <summary>The nodes that read each value, by value name.</summary>
    public static Dictionary<string, List<OnnxProto.NodeProto>> Consumers(OnnxProto.GraphProto graph)
    {
        var result = new Dictionary<string, List<OnnxProto.NodeProto>>(StringComparer.Ordinal);
        foreach (var n in graph.Node)
        {
            foreach (var i in n.Input.Where(i => i.Length > 0).Distinct())
            {
                if (!result.TryGetValue(i, out var list))
                {
                    result[i] = list = [];
                }

                list.Add(n);
            }
        }

        return result;
    }

    /// <summary>The node that produces each value.</summary>
    public static Dictionary<string, OnnxProto.NodeProto> Producers(OnnxProto.GraphProto graph)
    {
        var result = new Dictionary<string, OnnxProto.NodeProto>(StringComparer.Ordinal);
        foreach (var n in graph.Node)
        {
            foreach (var o in n.Output.Where(o => o.Length > 0))
            {
                result[o] = n;
            }
        }

        return result;
    }

    /// <summary>Every value, initializer and node name in the graph (to mint unique names).</summary>
    public static HashSet<string> Names(OnnxProto.GraphProto graph)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        names.UnionWith(graph.Input.Select(i => i.Name));
        names.UnionWith(graph.Output.Select(i => i.Name));
        names.UnionWith(graph.Initializer.Select(i => i.Name));
        foreach (var n in graph.Node)
        {
            names.UnionWith(n.Output);
            if (n.Name.Length > 0)
            {
                names.Add(n.Name);
            }
        }

        return names;
    }

    /// <summary>A name not yet in <paramref name="names"/> (which it joins).</summary>
    public static string Unique(HashSet<string> names, string stem)
    {
        var candidate = stem;
        for (var i = 1; !names.Add(candidate); i++)
        {
            candidate = $"{stem}_{i}";
        }

        return candidate;
    }

    /// <summary>A float32 initializer.</summary>
    public static OnnxProto.TensorProto FloatTensor(string name, long[] dims, ReadOnlySpan<float> values)
    {
        var t = new OnnxProto.TensorProto { Name = name, DataType = (int)ElementType.Float, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)) };
        t.Dims.AddRange(dims);
        return t;
    }

    /// <summary>A float16 initializer.</summary>
    public static OnnxProto.TensorProto HalfTensor(string name, IEnumerable<long> dims, ReadOnlySpan<float> values)
    {
        var halves = new Half[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            halves[i] = (Half)values[i];
        }

        var t = new OnnxProto.TensorProto { Name = name, DataType = (int)ElementType.Float16, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(halves.AsSpan())) };
        t.Dims.AddRange(dims);
        return t;
    }

    /// <summary>An int64 initializer.</summary>
    public static OnnxProto.TensorProto Int64Tensor(string name, long[] dims, ReadOnlySpan<long> values)
    {
        var t = new OnnxProto.TensorProto { Name = name, DataType = (int)ElementType.Int64, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)) };
        t.Dims.AddRange(dims);
        return t;
    }

    /// <summary>A tensor of raw bytes of any element type.</summary>
    public static OnnxProto.TensorProto RawTensor<T>(string name, ElementType type, long[] dims, ReadOnlySpan<T> values)
        where T : unmanaged
    {
        var t = new OnnxProto.TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)) };
        t.Dims.AddRange(dims);
        return t;
    }

    /// <summary>
    /// The initializer whose values a float32 weight input reads: the float32 initializer itself, or the float16 (or
    /// double) initializer behind a Cast to float32, as fp16-weight exports store their weights; null for anything else.
    /// </summary>
    public static OnnxProto.TensorProto? FloatWeight(string name, Dictionary<string, OnnxProto.TensorProto> initializers, Dictionary<string, OnnxProto.NodeProto> producers)
    {
        if (initializers.TryGetValue(name, out var t))
        {
            return TypeOf(t) == ElementType.Float ? t : null;
        }

        return producers.TryGetValue(name, out var cast) && cast.OpType == "Cast" && cast.Domain.Length == 0 && Int(cast, "to", 0) == (long)ElementType.Float
            && cast.Input.Count == 1 && initializers.TryGetValue(cast.Input[0], out var source) && TypeOf(source) is ElementType.Float16 or ElementType.Double or ElementType.Float
            ? source
            : null;
    }

    /// <summary>An attribute by name, or null.</summary>
    public static OnnxProto.AttributeProto? Attribute(OnnxProto.NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name);

    /// <summary>An int attribute, or its default.</summary>
    public static long Int(OnnxProto.NodeProto node, string name, long fallback) => Attribute(node, name) is { } a ? a.I : fallback;

    /// <summary>A float attribute, or its default.</summary>
    public static float Float(OnnxProto.NodeProto node, string name, float fallback) => Attribute(node, name) is { } a ? a.F : fallback;

    /// <summary>An ints attribute, or null.</summary>
    public static long[]? Ints(OnnxProto.NodeProto node, string name) => Attribute(node, name)?.Ints.ToArray();

    /// <summary>Sets (or adds) an int attribute.</summary>
    public static void SetInt(OnnxProto.NodeProto node, string name, long value)
    {
        if (Attribute(node, name) is { } a)
        {
            a.I = value;
        }
        else
        {
            node.Attribute.Add(new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = value });
        }
    }

    /// <summary>A node with inputs, outputs and attributes.</summary>
    public static OnnxProto.NodeProto Node(string opType, string name, string[] inputs, string[] outputs, params OnnxProto.AttributeProto[] attributes)
    {
        var n = new OnnxProto.NodeProto { OpType = opType, Name = name };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }

    /// <summary>An int attribute value.</summary>
    public static OnnxProto.AttributeProto IntAttr(string name, long value) =>
        new() { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>Element type of a tensor proto.</summary>
    public static ElementType TypeOf(OnnxProto.TensorProto t) => (ElementType)t.DataType;

    /// <summary>Replaces a float initializer's contents (same name), as float32.</summary>
    public static void SetFloats(OnnxProto.TensorProto t, long[] dims, ReadOnlySpan<float> values)
    {
        t.FloatData.Clear();
        t.Dims.Clear();
        t.Dims.AddRange(dims);
        t.DataType = (int)ElementType.Float;
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
    }

    /// <summary>
    /// Replaces each node that <paramref name="selects"/> picks by the nodes <paramref name="rewrite"/> returns, in its
    /// place and order, or keeps it where that returns none, with the reason it gives: the count replaced, and
    /// "<paramref name="label"/>: reason" for each node kept.
    /// </summary>
    public static (int Rewritten, List<string> Kept) ReplaceNodes(OnnxProto.GraphProto graph, Func<OnnxProto.NodeProto, bool> selects, Func<OnnxProto.NodeProto, (List<OnnxProto.NodeProto>? Nodes, string? Why)> rewrite, Func<OnnxProto.NodeProto, string> label)
    {
        var rewritten = 0;
        var kept = new List<string>();
        for (var i = 0; i < graph.Node.Count; i++)
        {
            var node = graph.Node[i];
            if (!selects(node))
            {
                continue;
            }

            var (nodes, why) = rewrite(node);
            if (nodes is null)
            {
                kept.Add($"{label(node)}: {why}");
                continue;
            }

            graph.Node.RemoveAt(i);
            for (var k = 0; k < nodes.Count; k++)
            {
                graph.Node.Insert(i + k, nodes[k]);
            }

            i += nodes.Count - 1;
            rewritten++;
        }

        return (rewritten, kept);
    }

    /// <summary>Sorts nodes so every node comes after the producers of its inputs (after edits that append nodes).</summary>
    public static void TopologicalSort(OnnxProto.GraphProto graph)
    {
        var available = new HashSet<string>(StringComparer.Ordinal) { string.Empty };
        available.UnionWith(graph.Input.Select(i => i.Name));
        available.UnionWith(graph.Initializer.Select(i => i.Name));
        var pending = graph.Node.ToList();
        var sorted = new List<OnnxProto.NodeProto>(pending.Count);
        while (pending.Count > 0)
        {
            var progressed = false;
            for (var i = 0; i < pending.Count; i++)
            {
                var n = pending[i];
                if (n.Input.All(available.Contains))
                {
                    sorted.Add(n);
                    available.UnionWith(n.Output);
                    pending.RemoveAt(i);
                    i--;
                    progressed = true;
                }
            }

            if (!progressed)
            {
                throw new BatchwiseException($"The graph has a cycle or a missing value at {Label(pending[0])}", "The model is not a valid ONNX graph.");
            }
        }

        graph.Node.Clear();
        graph.Node.AddRange(sorted);
    }
}
