using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>One node evaluated on the host: its known input values and shapes, attributes with the registry's defaults, and its inferred output shapes.</summary>
internal sealed class EvaluationContext : NodeContext
{
    private readonly ConcreteValue?[] _inputs;
    private SymbolicValue[]? _outputs;

    public EvaluationContext(OnnxProto.NodeProto node, OperatorSchema schema, long opset, ConcreteValue?[] inputs)
        : base(node, schema, opset)
    {
        _inputs = inputs;
    }

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

    public double Float(string name) => Attributes.Float(name);

    /// <summary>The shape shape inference gives output <paramref name="k"/> (the record's own inference, run on these concrete inputs).</summary>
    public long[] OutputShape(int k) => Outputs()[k].ConcreteShape;

    public ElementType OutputType(int k) => Outputs()[k].Type;

    public override BatchwiseException Fail(string what) => new($"{Where} cannot be evaluated on the host: {what}", "Check the model with onnx.checker.check_model(model, full_check=True).");

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
