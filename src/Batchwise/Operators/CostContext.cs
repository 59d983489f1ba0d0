using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>One node at concrete shapes, as the cost model counts it.</summary>
internal sealed class CostContext
{
    private readonly long[]?[] _inputs;
    private readonly long[]?[] _outputs;

    public CostContext(OnnxProto.NodeProto node, OperatorSchema schema, long opset, long[]?[] inputShapes, long[]?[] outputShapes)
    {
        Node = node;
        _inputs = inputShapes;
        _outputs = outputShapes;
        Attributes = new NodeAttributes(node, schema, opset);
        Opset = opset;
    }

    public OnnxProto.NodeProto Node { get; }

    public NodeAttributes Attributes { get; }

    public long Opset { get; }

    public bool Has(int i) => i < _inputs.Length && _inputs[i] is not null;

    public long[] InputShape(int i) => _inputs[i] ?? throw new InvalidOperationException($"input {i} is absent");

    public long InputElements(int i) => Has(i) ? Count(InputShape(i)) : 0;

    public long[] OutputShape(int k) => _outputs[k] ?? throw new InvalidOperationException($"output {k} is absent");

    /// <summary>Elements of the first output.</summary>
    public long OutputElements => _outputs.Length > 0 && _outputs[0] is { } s ? Count(s) : 0;

    /// <summary>Elements of every output.</summary>
    public long AllOutputElements => _outputs.Where(o => o is not null).Sum(o => Count(o!));

    public static long Count(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => checked(a * b));
}
