using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>One node evaluated on the host: its known input values and shapes, attributes with the registry's defaults, and its inferred output shapes.</summary>
internal sealed class EvaluationContext
{
    private readonly ConcreteValue?[] _inputs;
    private SymbolicValue[]? _outputs;

    public EvaluationContext(OnnxProto.NodeProto node, OperatorSchema schema, long opset, ConcreteValue?[] inputs)
    {
        Node = node;
        Schema = schema;
        Opset = opset;
        _inputs = inputs;
        Attributes = new NodeAttributes(node, schema, opset);
    }

    public OnnxProto.NodeProto Node { get; }

    public OperatorSchema Schema { get; }

    public long Opset { get; }

    public NodeAttributes Attributes { get; }

    public string OpType => Node.OpType;

    public int InputCount => Node.Input.Count;

    public int OutputCount => Node.Output.Count;

    public bool HasOutput(int i) => i < Node.Output.Count && Node.Output[i].Length > 0;

    public string Where => string.IsNullOrEmpty(Node.Name) ? Node.OpType : $"{Node.OpType} node '{Node.Name}'";

    public bool Has(int i) => i < Node.Input.Count && Node.Input[i].Length > 0 && i < _inputs.Length && _inputs[i] is not null;

    /// <summary>The value of input i; throws when it is absent or unknown.</summary>
    public HostTensor In(int i) => Has(i) && _inputs[i]!.Value is { } v ? v : throw Fail($"input {i} is not known on the host");

    /// <summary>The value of an optional input, or null when absent.</summary>
    public HostTensor? Optional(int i) => Has(i) ? In(i) : null;

    /// <summary>Every present input's value, in order.</summary>
    public HostTensor[] Present() => [.. Enumerable.Range(0, InputCount).Where(Has).Select(In)];

    /// <summary>The shape of input i (known even when its values are not).</summary>
    public long[] ShapeOf(int i) => Has(i) ? _inputs[i]!.Shape : throw Fail($"input {i} is missing");

    public ElementType TypeOf(int i) => Has(i) ? _inputs[i]!.Type : throw Fail($"input {i} is missing");

    public long Int(string name) => Attributes.Int(name);

    public long Int(string name, long fallback) => Attributes.Int(name, fallback);

    public double Float(string name) => Attributes.Float(name);

    public string String(string name) => Attributes.String(name);

    public long[]? Ints(string name) => Attributes.IntsOrDefault(name);

    /// <summary>The shape shape inference gives output <paramref name="k"/> (the record's own inference, run on these concrete inputs).</summary>
    public long[] OutputShape(int k) => Outputs()[k].ConcreteShape;

    public ElementType OutputType(int k) => Outputs()[k].Type;

    public BatchwiseException Fail(string what) => new($"{Where} cannot be evaluated on the host: {what}", "Check the model with onnx.checker.check_model(model, full_check=True).");

    public int Axis(long axis, int rank) => axis < -rank || axis >= Math.Max(rank, 1)
        ? throw Fail($"axis {axis} is out of range for rank {rank}")
        : (int)(axis < 0 ? axis + rank : axis);

    private SymbolicValue[] Outputs()
    {
        if (_outputs is null)
        {
            var inference = new InferenceContext(Node, Schema, Opset, [.. _inputs.Select(v => v?.ToSymbolic())]);
            _outputs = Schema.Infer!(inference);
            if (_outputs.Any(o => !o.IsConcrete))
            {
                throw Fail("its output shape depends on values that are not known");
            }
        }

        return _outputs;
    }
}
