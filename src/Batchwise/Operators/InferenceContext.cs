using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>One node during shape inference: its inputs, attributes (with the registry's defaults) and helpers that name the node in errors.</summary>
internal sealed class InferenceContext
{
    private readonly SymbolicValue?[] _inputs;

    public InferenceContext(OnnxProto.NodeProto node, OperatorSchema schema, long opset, SymbolicValue?[] inputs)
    {
        Node = node;
        Schema = schema;
        Opset = opset;
        _inputs = inputs;
        Attributes = new NodeAttributes(node, schema, opset);
    }

    public OnnxProto.NodeProto Node { get; }

    public OperatorSchema Schema { get; }

    /// <summary>The opset of the node's domain.</summary>
    public long Opset { get; }

    public NodeAttributes Attributes { get; }

    public string OpType => Node.OpType;

    public int InputCount => Node.Input.Count;

    /// <summary>Number of outputs the node declares (trailing optional ones may be empty names).</summary>
    public int OutputCount => Node.Output.Count;

    public bool HasOutput(int i) => i < Node.Output.Count && Node.Output[i].Length > 0;

    public string Where => string.IsNullOrEmpty(Node.Name) ? Node.OpType : $"{Node.OpType} node '{Node.Name}'";

    public bool Has(int i) => i < Node.Input.Count && !string.IsNullOrEmpty(Node.Input[i]) && i < _inputs.Length && _inputs[i] is not null;

    public SymbolicValue In(int i)
    {
        if (i >= Node.Input.Count || string.IsNullOrEmpty(Node.Input[i]))
        {
            throw Fail($"input {i} is missing");
        }

        return i < _inputs.Length && _inputs[i] is { } v ? v : throw Fail($"input '{Node.Input[i]}' has no inferred shape");
    }

    /// <summary>Every present input, in order.</summary>
    public IEnumerable<SymbolicValue> Present() => Enumerable.Range(0, InputCount).Where(Has).Select(In);

    public BatchwiseException Fail(string what) =>
        new($"Shape inference failed at {Where}: {what}", "Check the model with onnx.checker.check_model(model, full_check=True).");

    // ---- attributes ----

    public long Int(string name) => Attributes.Int(name);

    public long Int(string name, long fallback) => Attributes.Int(name, fallback);

    public float Float(string name) => (float)Attributes.Float(name);

    public string String(string name) => Attributes.String(name);

    public long[]? Ints(string name) => Attributes.IntsOrDefault(name);

    public bool HasAttribute(string name) => Attributes.Has(name);

    // ---- values of inputs ----

    /// <summary>The whole value of an input, when known.</summary>
    public HostTensor? Value(int i) => Has(i) ? In(i).Known : null;

    /// <summary>The elements of an integer input, possibly symbolic, or null when not known before running.</summary>
    public DimExpr[]? Dims(int i) => Has(i) ? In(i).Data ?? (In(i).Value is { } v ? [.. v.AsLongs().Select(DimExpr.Of)] : null) : null;

    /// <summary>The numbers of an integer input, or null when they are not known before running.</summary>
    public long[]? ConstInts(int i) => Dims(i) is { } d && d.All(x => x.IsConcrete) ? [.. d.Select(x => x.Value)] : null;

    /// <summary>The numbers of an input the output shape depends on; throws naming it when they are not known.</summary>
    public long[] RequireInts(int i, string what) => ConstInts(i) ?? throw Unknown(i, what);

    /// <summary>The elements (possibly symbolic) of an input the output shape depends on; throws naming it when unknown.</summary>
    public DimExpr[] RequireDims(int i, string what) => Dims(i) ?? throw Unknown(i, what);

    /// <summary>The values of a float (or integer) input as doubles, or null when not known.</summary>
    public double[]? ConstFloats(int i) => Value(i)?.AsDoubles() ?? ConstInts(i)?.Select(v => (double)v).ToArray();

    private BatchwiseException Unknown(int i, string what) => new(
        $"Shape inference cannot resolve {what} of {Where}: input '{Node.Input[i]}' is computed at run time from values, not from shapes",
        "Export the model with constant shapes, or simplify it with onnxsim.");

    // ---- shape helpers ----

    public int Axis(long axis, int rank) => axis < -rank || axis >= Math.Max(rank, 1)
        ? throw Fail($"axis {axis} is out of range for rank {rank}")
        : (int)(axis < 0 ? axis + rank : axis);

    /// <summary>Numpy broadcasting of any number of shapes; a symbolic dimension against 1 stays symbolic.</summary>
    public DimExpr[] Broadcast(params DimExpr[][] shapes)
    {
        var result = shapes[0];
        foreach (var b in shapes.Skip(1))
        {
            result = Broadcast2(result, b);
        }

        return result;
    }

    private DimExpr[] Broadcast2(DimExpr[] a, DimExpr[] b)
    {
        var rank = Math.Max(a.Length, b.Length);
        var result = new DimExpr[rank];
        for (var i = 0; i < rank; i++)
        {
            var da = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : DimExpr.Of(1);
            var db = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : DimExpr.Of(1);
            result[i] =
                da == db ? da
                : da.IsConcrete && da.Value == 1 ? db
                : db.IsConcrete && db.Value == 1 ? da
                : da.IsConcrete && db.IsConcrete ? throw Fail($"shapes [{string.Join(", ", a)}] and [{string.Join(", ", b)}] do not broadcast")
                : da.IsConcrete ? da
                : db;
        }

        return result;
    }

    public static DimExpr Product(IEnumerable<DimExpr> dims) => dims.Aggregate(DimExpr.Of(1), (a, b) => a * b);

    /// <summary>One output of the input's element type and the given shape.</summary>
    public SymbolicValue Output(ElementType type, DimExpr[] shape, DimExpr[]? data = null) => new(type, shape, data);
}
