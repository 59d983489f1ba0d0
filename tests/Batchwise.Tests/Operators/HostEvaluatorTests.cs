using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Operators;

/// <summary>The registry's host implementations and shape inference against ONNX Runtime, operator by operator.</summary>
public sealed class HostEvaluatorTests
{
    public static TheoryData<string> Cases => [.. OperatorCases.All.Keys];

    [Fact]
    public void Every_registry_operator_has_a_case_checked_against_onnx_runtime()
    {
        var covered = OperatorCases.All.Values.Select(c => (c.Domain, c.OpType)).ToHashSet();
        var missing = OperatorRegistry.All.Where(s => !covered.Contains((s.Domain, s.OpType))).Select(s => s.QualifiedName).ToList();
        Assert.True(missing.Count == 0, $"operators without a case: {string.Join(", ", missing)}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Host_evaluation_and_shape_inference_agree_with_onnx_runtime(string name)
    {
        var c = OperatorCases.All[name];
        var (model, values) = Build(c);
        var node = model.Graph.Node[0];

        var inferred = ShapeInference.Run(model);
        var proto = model.Proto.Clone();
        foreach (var o in proto.Graph.Output)
        {
            o.Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)inferred[o.Name].ElementType } };
        }

        IReadOnlyList<Tensor> expected;
        using (var session = new OrtEngine().Load(OnnxModel.FromProto(proto, c.Name), new EngineOptions { GraphOptimization = "disabled" }))
        {
            expected = session.Run([.. session.Inputs.Select(i => values[i.Name]!.ToTensor())]);
        }

        var concrete = node.Input.Select(i => i.Length == 0 ? null : ConcreteValue.Of(values[i]!)).ToArray();
        var actual = HostEvaluator.TryEvaluate(node, c.Opset, concrete, whenNeeded: true, maxElements: long.MaxValue);
        Assert.NotNull(actual);
        for (var k = 0; k < expected.Count; k++)
        {
            var want = HostTensor.FromTensor(expected[k]);
            var shape = inferred[node.Output[k]];
            var dataDependent = OperatorRegistry.Find(c.Domain, c.OpType, c.Opset)!.HasDataDependentShape;
            Assert.True(
                shape.ElementType == want.Type && (dataDependent ? shape.Rank == want.Shape.Length : shape.ToArray().SequenceEqual(want.Shape)),
                $"{name} output {k}: shape inference gives {shape}, ONNX Runtime {want}");
            var got = actual[k];
            Assert.True(got.Type == want.Type && got.Shape.SequenceEqual(want.Shape), $"{name} output {k}: host gives {got}, ONNX Runtime {want}");
            for (long i = 0; i < want.Count; i++)
            {
                var (a, b) = (got[i], want[i]);
                var close = a == b || (double.IsNaN(a) && double.IsNaN(b)) || (want.IsFloat && Math.Abs(a - b) <= 1e-4 + (1e-4 * Math.Abs(b)));
                Assert.True(close, $"{name} output {k} element {i}: host {a}, ONNX Runtime {b}");
            }
        }
    }

    [Fact]
    public void A_bidirectional_node_with_one_activation_set_is_refused_as_onnx_runtime_refuses_it()
    {
        var c = OperatorCases.BidirectionalWithOneActivationSet;
        var (model, values) = Build(c);
        Assert.ThrowsAny<Exception>(() => new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" }).Dispose());
        var node = model.Graph.Node[0];
        var error = Assert.ThrowsAny<Exception>(() => HostEvaluator.TryEvaluate(node, c.Opset, [.. node.Input.Select(i => i.Length == 0 ? null : ConcreteValue.Of(values[i]!))], whenNeeded: true, maxElements: long.MaxValue));
        Assert.Contains("gives 3 activations; a bidirectional LSTM needs 6", error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string> Layout1Cases => [.. OperatorCases.RecurrentLayout1.Keys];

    [Theory]
    [MemberData(nameof(Layout1Cases))]
    public void Recurrent_layout_1_agrees_with_onnx_runtime_on_the_same_values_in_layout_0(string name)
    {
        var c = OperatorCases.RecurrentLayout1[name];
        var (model, values) = Build(c);
        var node = model.Graph.Node[0];
        var inferred = ShapeInference.Run(model);
        var actual = HostEvaluator.TryEvaluate(node, c.Opset, [.. node.Input.Select(i => i.Length == 0 ? null : ConcreteValue.Of(values[i]!))], whenNeeded: true, maxElements: long.MaxValue);
        Assert.NotNull(actual);

        // The same values in layout 0: X [seq, batch, input], initial states [directions, batch, hidden].
        var inputs = c.Inputs.Select((input, i) => input.Type == ElementType.Undefined ? input
            : i is 0 or 5 or 6 ? Given(Transpose(values[node.Input[i]]!, 1, 0, 2))
            : Given(values[node.Input[i]]!)).ToArray();
        var layout0 = c with { Name = c.Name + "-as-layout0", Inputs = inputs, Attributes = [.. c.Attributes.Where(a => a.Name != "layout")] };
        var (model0, values0) = Build(layout0);
        IReadOnlyList<Tensor> expected;
        using (var session = new OrtEngine().Load(model0, new EngineOptions { GraphOptimization = "disabled" }))
        {
            expected = session.Run([.. session.Inputs.Select(i => values0[i.Name]!.ToTensor())]);
        }

        for (var k = 0; k < expected.Count; k++)
        {
            // Back to layout 1: Y [seq, directions, batch, hidden] -> [batch, seq, directions, hidden]; states [directions, batch, hidden] -> [batch, directions, hidden].
            var want = k == 0 ? Transpose(HostTensor.FromTensor(expected[k]), 2, 0, 1, 3) : Transpose(HostTensor.FromTensor(expected[k]), 1, 0, 2);
            Assert.Equal(want.Shape, inferred[node.Output[k]].ToArray());
            Assert.Equal(want.Shape, actual[k].Shape);
            for (long i = 0; i < want.Count; i++)
            {
                Assert.True(Math.Abs(actual[k][i] - want[i]) <= 1e-4 + (1e-4 * Math.Abs(want[i])), $"{name} output {k} element {i}: host {actual[k][i]}, ONNX Runtime {want[i]}");
            }
        }
    }

    private static CaseInput Given(HostTensor t) => new(t.Type, t.Shape, t.AsDoubles());

    private static HostTensor Transpose(HostTensor t, params long[] perm)
    {
        var node = new OnnxProto.NodeProto { OpType = "Transpose", Input = { "x" }, Output = { "y" } };
        node.Attribute.Add(Batchwise.Zoo.GraphBuilder.Attr("perm", perm));
        return HostEvaluator.TryEvaluate(node, 17, [ConcreteValue.Of(t)], whenNeeded: true, maxElements: long.MaxValue)![0];
    }

    /// <summary>A one-node model: host-valued inputs as initializers (so shape inference sees them), the others as graph inputs.</summary>
    internal static (OnnxModel Model, Dictionary<string, HostTensor?> Values) Build(OperatorCase c)
    {
        var random = new Random(c.Name.Aggregate(17, (h, ch) => (h * 31) + ch));
        var schema = OperatorRegistry.Find(c.Domain, c.OpType, c.Opset) ?? throw new InvalidOperationException($"{c.OpType} is not in the registry at opset {c.Opset}");
        var hostInputs = schema.HostInputsAt(c.Opset);
        var graph = new OnnxProto.GraphProto { Name = c.Name };
        var node = new OnnxProto.NodeProto { OpType = c.OpType, Domain = c.Domain, Name = "node" };
        node.Attribute.AddRange(c.Attributes);
        var values = new Dictionary<string, HostTensor?>(StringComparer.Ordinal);
        for (var i = 0; i < c.Inputs.Length; i++)
        {
            var input = c.Inputs[i];
            if (input.Type == ElementType.Undefined)
            {
                node.Input.Add(string.Empty);
                continue;
            }

            var name = $"in{i}";
            var value = input.Values is { } given
                ? HostTensor.Create(input.Type, input.Shape, k => given[k])
                : HostTensor.Create(input.Type, input.Shape, _ => input.Type.IsFloatingPoint() ? input.Low + ((input.High - input.Low) * random.NextDouble()) : random.NextInt64((long)input.Low, (long)input.High + 1));
            values[name] = value;
            node.Input.Add(name);
            if (hostInputs.Contains(i))
            {
                graph.Initializer.Add(value.ToProto(name));
            }
            else
            {
                var info = new OnnxProto.ValueInfoProto { Name = name, Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)input.Type, Shape = new OnnxProto.TensorShapeProto() } } };
                info.Type.TensorType.Shape.Dim.AddRange(input.Shape.Select(d => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = d }));
                graph.Input.Add(info);
            }
        }

        for (var k = 0; k < c.Outputs; k++)
        {
            node.Output.Add($"out{k}");
            graph.Output.Add(new OnnxProto.ValueInfoProto { Name = $"out{k}" });
        }

        graph.Node.Add(node);
        var proto = new OnnxProto.ModelProto { IrVersion = 8, Graph = graph };
        proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = c.Domain.Length == 0 ? c.Opset : 17 });
        if (c.Domain.Length > 0)
        {
            proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = c.Domain, Version = c.Opset });
        }

        return (OnnxModel.FromProto(proto, c.Name), values);
    }
}
