using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Onnx;

/// <summary>Where a model's batch axis is, or why it has none.</summary>
/// <param name="IsBatchable">True when every input's first dimension is dynamic (one shared symbol).</param>
/// <param name="Symbol">The batch dimension's symbol, when dynamic.</param>
/// <param name="Reason">Why the model cannot be batched, when it cannot.</param>
public sealed record BatchAxis(bool IsBatchable, string? Symbol, string? Reason);

/// <summary>An ONNX model in memory: parsed, validated, with its inputs and outputs described.</summary>
public sealed class OnnxModel
{
    /// <summary>Oldest IR version we accept (ONNX 1.1).</summary>
    public const long MinIrVersion = 3;

    /// <summary>Newest IR version we know (ONNX 1.18+).</summary>
    public const long MaxIrVersion = 11;

    /// <summary>Newest default-domain opset we know.</summary>
    public const long MaxOpset = 23;

    private OnnxModel(OnnxProto.ModelProto proto, string name, string? path)
    {
        Proto = proto;
        Name = name;
        Path = path;
    }

    /// <summary>The underlying protobuf message.</summary>
    public OnnxProto.ModelProto Proto { get; }

    /// <summary>The graph.</summary>
    public OnnxProto.GraphProto Graph => Proto.Graph;

    /// <summary>A short name for reports (file name without extension, or zoo name).</summary>
    public string Name { get; }

    /// <summary>The file it was loaded from, if any.</summary>
    public string? Path { get; }

    /// <summary>The saved engine (<c>.bwengine</c>) this model was read from, if it was: its engine loads its compiled artefacts.</summary>
    public string? SavedEngine { get; internal set; }

    /// <summary>
    /// True for a saved engine's model whose float weights were left out (declared by type and shape; the engine holds
    /// their device-ready form): it runs on the engine that built it, and is never written out as a model.
    /// </summary>
    public bool WeightsLeftOut { get; internal set; }

    /// <summary>Seconds spent reading this model from its file (or saved engine) and parsing it; 0 when built in memory.</summary>
    public double ReadSeconds { get; internal set; }

    /// <summary>How <see cref="ReadSeconds"/> splits (the file read, its hash checked, the model parsed), seconds by name; empty when not measured.</summary>
    public IReadOnlyDictionary<string, double> ReadSpans { get; internal set; } = new Dictionary<string, double>();

    /// <summary>Default-domain opset version.</summary>
    public long Opset => Proto.OpsetImport.Where(o => string.IsNullOrEmpty(o.Domain) || o.Domain == "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();

    /// <summary>The opset imported for <paramref name="domain"/> ("" or ai.onnx: the default domain); 1 when the model imports none for it.</summary>
    public long OpsetOf(string? domain)
    {
        if (string.IsNullOrEmpty(domain) || domain == "ai.onnx")
        {
            return Opset;
        }

        return Proto.OpsetImport.Where(o => o.Domain == domain).Select(o => o.Version).DefaultIfEmpty(1).Max();
    }

    /// <summary>Graph inputs that are not initializers, in declaration order.</summary>
    public IReadOnlyList<TensorSpec> Inputs
    {
        get
        {
            var init = Graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            return Graph.Input.Where(i => !init.Contains(i.Name)).Select(ToSpec).ToList();
        }
    }

    /// <summary>Graph outputs in declaration order.</summary>
    public IReadOnlyList<TensorSpec> Outputs => Graph.Output.Select(ToSpec).ToList();

    /// <summary>Number of weight elements (all initializers).</summary>
    public long ParameterCount => Graph.Initializer.Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));

    /// <summary>Loads a model file, inlining external data, and validates it.</summary>
    public static OnnxModel Load(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new BatchwiseException("No model given", "Pass a path to a .onnx file or zoo:NAME (see `batchwise zoo list`).");
        }

        if (Directory.Exists(path))
        {
            throw new BatchwiseException($"'{path}' is a directory, not a model file", "Pass the .onnx file inside it.");
        }

        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Model file '{path}' not found", "Check the path, or use a built-in model such as zoo:resnet18.");
        }

        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot read model file '{path}': {e.Message}", "Check the file's permissions.", e);
        }

        var name = System.IO.Path.GetFileNameWithoutExtension(path);
        return FromBytes(bytes, name, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)), path);
    }

    /// <summary>Parses model bytes; external data is resolved against <paramref name="baseDirectory"/>.</summary>
    public static OnnxModel FromBytes(byte[] bytes, string name, string? baseDirectory = null, string? path = null)
    {
        var where = path ?? name;
        if (bytes.Length == 0)
        {
            throw new BatchwiseException($"'{where}' is empty", "Re-export the model; an ONNX file holds a serialized ModelProto.");
        }

        OnnxProto.ModelProto proto;
        try
        {
            proto = OnnxProto.ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            var truncated = e.Message.Contains("truncated", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("end of", StringComparison.OrdinalIgnoreCase);
            throw truncated
                ? new BatchwiseException($"'{where}' is truncated ({bytes.Length} bytes): {e.Message}", "The file was cut short; copy or download it again.", e)
                : new BatchwiseException($"'{where}' is not an ONNX model (not a valid protobuf): {e.Message}", "Pass a .onnx file exported by torch.onnx, tf2onnx or similar.", e);
        }

        if (proto.Graph is null || (proto.Graph.Node.Count == 0 && proto.Graph.Output.Count == 0))
        {
            throw new BatchwiseException($"'{where}' has no graph; it is not an ONNX model", "Pass a .onnx file exported by torch.onnx, tf2onnx or similar.");
        }

        InlineExternalData(proto, baseDirectory, where);
        SortTopologically(proto.Graph, where);
        var model = new OnnxModel(proto, name, path);
        model.Validate();
        return model;
    }

    /// <summary>Wraps an in-memory proto (zoo models, transforms) and validates it.</summary>
    public static OnnxModel FromProto(OnnxProto.ModelProto proto, string name)
    {
        ArgumentNullException.ThrowIfNull(proto);
        if (proto.Graph is not null)
        {
            SortTopologically(proto.Graph, name);
        }

        var model = new OnnxModel(proto, name, null);
        model.Validate();
        return model;
    }

    /// <summary>Checks what engines rely on and explains the first problem found.</summary>
    public void Validate()
    {
        var where = Path ?? Name;
        if (Proto.IrVersion < MinIrVersion || Proto.IrVersion > MaxIrVersion)
        {
            throw new BatchwiseException($"'{where}' has IR version {Proto.IrVersion}; Batchwise reads IR {MinIrVersion} to {MaxIrVersion}", "Convert it with onnx.version_converter or re-export with a current exporter.");
        }

        var opset = Opset;
        if (opset == 0)
        {
            throw new BatchwiseException($"'{where}' imports no default-domain opset", "Re-export the model with an opset_import for the ai.onnx domain.");
        }

        if (opset < 7 || opset > MaxOpset)
        {
            throw new BatchwiseException($"'{where}' uses opset {opset}; Batchwise reads opsets 7 to {MaxOpset}", "Convert it with onnx.version_converter.convert_version(model, 17).");
        }

        var known = new HashSet<string>(StringComparer.Ordinal) { string.Empty };
        foreach (var i in Graph.Input)
        {
            known.Add(i.Name);
        }

        foreach (var t in Graph.Initializer)
        {
            known.Add(t.Name);
        }

        foreach (var node in Graph.Node)
        {
            foreach (var input in node.Input)
            {
                if (!known.Contains(input))
                {
                    var label = string.IsNullOrEmpty(node.Name) ? node.OpType : $"{node.OpType} '{node.Name}'";
                    throw new BatchwiseException($"'{where}': {label} reads '{input}', which is neither a graph input, an initializer nor an earlier node's output (missing initializer?)", "Re-export the model with its weights, or check the graph is topologically sorted.");
                }
            }

            foreach (var output in node.Output)
            {
                known.Add(output);
            }
        }

        foreach (var o in Graph.Output)
        {
            if (!known.Contains(o.Name))
            {
                throw new BatchwiseException($"'{where}': graph output '{o.Name}' is produced by no node", "Re-export the model.");
            }
        }
    }

    /// <summary>Finds the batch axis: dimension 0 of every input, when it is dynamic.</summary>
    public BatchAxis FindBatchAxis()
    {
        var inputs = Inputs;
        if (inputs.Count == 0)
        {
            return new BatchAxis(false, null, "the model has no inputs");
        }

        string? symbol = null;
        foreach (var input in inputs)
        {
            if (input.Shape.Count == 0)
            {
                return new BatchAxis(false, null, $"input '{input.Name}' is a scalar");
            }

            var d0 = input.Shape[0];
            if (!d0.IsDynamic)
            {
                return new BatchAxis(false, null, $"input '{input.Name}' has its first dimension fixed at {d0.Value} in the file ({input.ShapeText})");
            }

            symbol ??= d0.Symbol;
        }

        return new BatchAxis(true, symbol ?? "N", null);
    }

    /// <summary>Serializes the model.</summary>
    public byte[] ToBytes()
    {
        RefuseIfWeightsLeftOut();
        return Proto.ToByteArray();
    }

    /// <summary>Refuses, in one line, to hand on a saved engine's model whose weights were left out.</summary>
    private void RefuseIfWeightsLeftOut()
    {
        if (WeightsLeftOut)
        {
            throw new BatchwiseException($"'{SavedEngine ?? Name}' is a saved engine: it carries the model's structure and device-ready weights, not the model's float weights", "Give this command the original .onnx model; run the saved engine with the engine that built it (--engine cuda).");
        }
    }

    /// <summary>Saves the model to a file.</summary>
    public void Save(string path)
    {
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            throw new BatchwiseException($"Cannot save to '{path}': folder '{dir}' does not exist", "Create the folder first or choose another path.");
        }

        // Write to a temporary file first so a failure never leaves a half-written model.
        var tmp = path + ".tmp";
        File.WriteAllBytes(tmp, ToBytes());
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Describes a value_info as a spec.</summary>
    public static TensorSpec ToSpec(OnnxProto.ValueInfoProto v)
    {
        var tt = v.Type?.TensorType;
        if (tt is null)
        {
            return new TensorSpec(v.Name, ElementType.Undefined, []);
        }

        var dims = tt.Shape?.Dim.Select(d => d.ValueCase switch
        {
            OnnxProto.TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue => Dim.Fixed(d.DimValue),
            OnnxProto.TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam => Dim.Symbolic(d.DimParam),
            _ => new Dim(null, null),
        }).ToList() ?? [];
        return new TensorSpec(v.Name, (ElementType)tt.ElemType, dims);
    }

    /// <summary>
    /// Puts the nodes in an order where every value is produced before it is read, as ONNX Runtime accepts graphs
    /// whose node list is out of order (a Cast at the end read by node 0). Nodes already in order keep their places;
    /// a cycle is an error naming a node on it. Values read from outer scopes inside subgraphs (If, Loop) count as inputs.
    /// </summary>
    private static void SortTopologically(OnnxProto.GraphProto graph, string where)
    {
        var nodes = graph.Node;
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < nodes.Count; i++)
        {
            foreach (var o in nodes[i].Output.Where(o => o.Length > 0))
            {
                producer.TryAdd(o, i);
            }
        }

        var reads = nodes.Select(n => n.Input.Concat(n.Attribute.SelectMany(SubgraphReads)).Where(producer.ContainsKey).Select(v => producer[v]).Distinct().ToArray()).ToArray();
        var inOrder = true;
        for (var i = 0; i < nodes.Count && inOrder; i++)
        {
            inOrder = reads[i].All(p => p < i);
        }

        if (inOrder)
        {
            return;
        }

        // Kahn's algorithm, always taking the earliest ready node, so the original order survives where it can.
        var pending = new int[nodes.Count];
        var consumers = Enumerable.Range(0, nodes.Count).Select(_ => new List<int>()).ToArray();
        for (var i = 0; i < nodes.Count; i++)
        {
            pending[i] = reads[i].Length;
            foreach (var p in reads[i])
            {
                consumers[p].Add(i);
            }
        }

        var ready = new PriorityQueue<int, int>();
        for (var i = 0; i < nodes.Count; i++)
        {
            if (pending[i] == 0)
            {
                ready.Enqueue(i, i);
            }
        }

        var order = new List<int>(nodes.Count);
        while (ready.TryDequeue(out var i, out _))
        {
            order.Add(i);
            foreach (var c in consumers[i])
            {
                if (--pending[c] == 0)
                {
                    ready.Enqueue(c, c);
                }
            }
        }

        if (order.Count < nodes.Count)
        {
            var stuck = Enumerable.Range(0, nodes.Count).First(i => pending[i] > 0);
            var node = nodes[stuck];
            var label = string.IsNullOrEmpty(node.Name) ? $"{node.OpType} (output '{node.Output.FirstOrDefault()}')" : $"{node.OpType} '{node.Name}'";
            var waitsOn = node.Input.FirstOrDefault(v => producer.TryGetValue(v, out var p) && pending[p] > 0) ?? node.Input.FirstOrDefault();
            throw new BatchwiseException($"'{where}': the graph has a cycle through {label}, which reads '{waitsOn}' computed from its own output", "Re-export the model; an ONNX graph must be acyclic.");
        }

        var sorted = order.Select(i => nodes[i]).ToList();
        nodes.Clear();
        nodes.AddRange(sorted);
    }

    /// <summary>Names a node's subgraphs read (their nodes' inputs), so outer-scope values order the node after their producers.</summary>
    private static IEnumerable<string> SubgraphReads(OnnxProto.AttributeProto a) =>
        (a.G is null ? Enumerable.Empty<OnnxProto.GraphProto>() : [a.G]).Concat(a.Graphs).SelectMany(g => g.Node.SelectMany(n => n.Input.Concat(n.Attribute.SelectMany(SubgraphReads))));

    private static void InlineExternalData(OnnxProto.ModelProto proto, string? baseDirectory, string where)
    {
        foreach (var t in proto.Graph.Initializer)
        {
            if (t.DataLocation != OnnxProto.TensorProto.Types.DataLocation.External)
            {
                continue;
            }

            var entries = t.ExternalData.ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
            if (!entries.TryGetValue("location", out var location))
            {
                throw new BatchwiseException($"'{where}': initializer '{t.Name}' is external but names no location", "Re-save the model with onnx.save(..., save_as_external_data=True).");
            }

            var file = System.IO.Path.Combine(baseDirectory ?? ".", location);
            if (!File.Exists(file))
            {
                throw new BatchwiseException($"'{where}': external data '{location}' for initializer '{t.Name}' not found (looked for {file})", "Keep the external data file next to the .onnx file.");
            }

            long offset = entries.TryGetValue("offset", out var o) ? long.Parse(o, System.Globalization.CultureInfo.InvariantCulture) : 0;
            long length = entries.TryGetValue("length", out var l) ? long.Parse(l, System.Globalization.CultureInfo.InvariantCulture) : new FileInfo(file).Length - offset;
            using var stream = File.OpenRead(file);
            if (offset + length > stream.Length)
            {
                throw new BatchwiseException($"'{where}': external data '{location}' is too short for initializer '{t.Name}' (needs {offset + length} bytes, has {stream.Length})", "The data file is truncated; copy it again.");
            }

            var buffer = new byte[length];
            stream.Seek(offset, SeekOrigin.Begin);
            stream.ReadExactly(buffer);
            t.RawData = ByteString.CopyFrom(buffer);
            t.ExternalData.Clear();
            t.DataLocation = OnnxProto.TensorProto.Types.DataLocation.Default;
        }
    }
}
