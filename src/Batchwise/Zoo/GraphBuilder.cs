using Batchwise.Onnx;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Zoo;

/// <summary>Builds ONNX graphs in code with seeded random weights (the model zoo's tool).</summary>
public sealed partial class GraphBuilder
{
    private readonly OnnxProto.GraphProto _graph;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _counter;
    private ulong _state;

    /// <summary>Starts a graph with a name and a weight seed; without <paramref name="withWeights"/>, float weights get shapes but no data (for counting, not running).</summary>
    public GraphBuilder(string name, int seed = 0, bool withWeights = true)
    {
        _graph = new OnnxProto.GraphProto { Name = name };
        Random = new Random(seed);
        _state = 0x9E3779B97F4A7C15UL ^ (ulong)(uint)seed * 0xBF58476D1CE4E5B9UL;
        WithWeights = withWeights;
    }

    /// <summary>False when float weights are declared with shapes only (a structure for shape inference and cost counting).</summary>
    public bool WithWeights { get; }

    /// <summary>The default-domain opset the graph is written for: the opset-aware layers (Unsqueeze, LayerNorm, ...) write each operator as an exporter does at this opset.</summary>
    public long Opset { get; init; } = 17;

    /// <summary>The seeded generator for weights.</summary>
    public Random Random { get; }

    /// <summary>Adds a graph input; dimensions are longs (fixed) or strings (symbolic).</summary>
    public string Input(string name, ElementType type, params object[] dims)
    {
        _graph.Input.Add(ValueInfo(name, type, dims));
        _names.Add(name);
        return name;
    }

    /// <summary>Declares a graph output.</summary>
    public void Output(string name, ElementType type, params object[] dims) => _graph.Output.Add(ValueInfo(name, type, dims));

    /// <summary>Adds a float initializer with values uniform in [-scale, scale].</summary>
    public string Weight(string name, long[] shape, float scale) => Uniform(name, shape, -scale, scale);

    /// <summary>Adds a float initializer with values uniform in [<paramref name="low"/>, <paramref name="high"/>).</summary>
    public string Uniform(string name, long[] shape, float low, float high)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var t = new OnnxProto.TensorProto { Name = Unique(name), DataType = (int)ElementType.Float };
        t.Dims.AddRange(shape);
        if (WithWeights)
        {
            var n = checked((int)Engines.Tensor.ElementCountOf(shape));
            var bytes = new byte[n * sizeof(float)];
            Fill(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan()), low, high);

            // The array is never touched again, so the proto can own it without a copy (BERT-base holds 440 MB).
            t.RawData = UnsafeByteOperations.UnsafeWrap(bytes);
        }

        _graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>Adds a float initializer with given values.</summary>
    public string Initializer(string name, long[] shape, float[] values)
    {
        var t = new OnnxProto.TensorProto { Name = Unique(name), DataType = (int)ElementType.Float };
        t.Dims.AddRange(shape);
        t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        _graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>Adds an initializer of any element type from its values (int8 weights, uint8 zero points).</summary>
    public string Raw<T>(string name, ElementType type, long[] shape, ReadOnlySpan<T> values)
        where T : unmanaged
    {
        var t = Transforms.GraphSurgery.RawTensor(Unique(name), type, shape, values);
        _graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>Adds an int64 initializer (shapes, axes, indices).</summary>
    public string Int64s(string name, long[] values, long[]? shape = null)
    {
        var t = new OnnxProto.TensorProto { Name = Unique(name), DataType = (int)ElementType.Int64 };
        t.Dims.AddRange(shape ?? [values.Length]);
        t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        _graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>Adds a node with one output; returns the output name.</summary>
    public string Node(string opType, string[] inputs, params OnnxProto.AttributeProto[] attributes) =>
        NodeN(opType, inputs, 1, attributes)[0];

    /// <summary>Adds a node with several outputs; returns their names.</summary>
    public string[] NodeN(string opType, string[] inputs, int outputCount, params OnnxProto.AttributeProto[] attributes)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var name = Unique(opType.ToLowerInvariant());
        var node = new OnnxProto.NodeProto { OpType = opType, Name = name };
        node.Input.AddRange(inputs);
        var outputs = Enumerable.Range(0, outputCount).Select(i => outputCount == 1 ? name + "_out" : $"{name}_out{i}").ToArray();
        foreach (var o in outputs)
        {
            _names.Add(o);
        }

        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Renames the last node's output (to give graph outputs stable names).</summary>
    public string Rename(string output, string newName)
    {
        foreach (var node in _graph.Node)
        {
            for (var i = 0; i < node.Output.Count; i++)
            {
                if (node.Output[i] == output)
                {
                    node.Output[i] = newName;
                }
            }

            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == output)
                {
                    node.Input[i] = newName;
                }
            }
        }

        _names.Add(newName);
        return newName;
    }

    /// <summary>Finishes the model (default-domain opset <paramref name="opset"/>, else <see cref="Opset"/>; IR 8, or what a newer opset needs).</summary>
    public OnnxModel Build(string modelName, long? opset = null)
    {
        var model = new OnnxProto.ModelProto
        {
            IrVersion = (opset ?? Opset) switch { >= 21 => 10, >= 19 => 9, _ => 8 },
            ProducerName = "batchwise-zoo",
            ProducerVersion = typeof(GraphBuilder).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = _graph,
        };
        model.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = opset ?? Opset });
        return OnnxModel.FromProto(model, modelName);
    }

    /// <summary>An int attribute.</summary>
    public static OnnxProto.AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>A float attribute.</summary>
    public static OnnxProto.AttributeProto Attr(string name, float value) =>
        new() { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>A string attribute.</summary>
    public static OnnxProto.AttributeProto Attr(string name, string value) =>
        new() { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    /// <summary>An ints attribute.</summary>
    public static OnnxProto.AttributeProto Attr(string name, params long[] values)
    {
        var a = new OnnxProto.AttributeProto { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>A tensor attribute (for Constant nodes).</summary>
    public static OnnxProto.AttributeProto Attr(string name, OnnxProto.TensorProto value) =>
        new() { Name = name, Type = OnnxProto.AttributeProto.Types.AttributeType.Tensor, T = value };

    private string Unique(string name)
    {
        var candidate = name;
        while (!_names.Add(candidate))
        {
            candidate = $"{name}_{++_counter}";
        }

        return candidate;
    }

    private static OnnxProto.ValueInfoProto ValueInfo(string name, ElementType type, object[] dims)
    {
        var shape = new OnnxProto.TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d switch
            {
                string s => new OnnxProto.TensorShapeProto.Types.Dimension { DimParam = s },
                int i => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = i },
                long l => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = l },
                _ => throw new ArgumentException($"Dimension {d} must be a long or a string", nameof(dims)),
            });
        }

        return new OnnxProto.ValueInfoProto
        {
            Name = name,
            Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}
