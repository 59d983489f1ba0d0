using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Tests.Zoo;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Onnx;

public sealed class ShapeInferenceTests
{
    [Theory]
    [MemberData(nameof(ZooModelTests.SmallModels), MemberType = typeof(ZooModelTests))]
    public void Every_value_of_every_zoo_model_matches_onnx_runtime_at_batch_1_and_2(string spec)
    {
        var model = ModelZoo.Build(spec);
        foreach (var batch in new[] { 1L, 2L })
        {
            var inferred = ShapeInference.Run(model, new Dictionary<string, long> { ["batch"] = batch });
            var (names, actual) = RunExposingEveryValue(model, inferred, batch);
            Assert.True(names.Count > 20, $"{spec}: only {names.Count} values compared");
            for (var i = 0; i < names.Count; i++)
            {
                var expected = inferred[names[i]];
                Assert.True(expected.IsConcrete, $"{spec} b={batch}: '{names[i]}' is {expected}");
                Assert.True(
                    expected.ToArray().SequenceEqual(actual[i].Shape) && expected.ElementType == actual[i].ElementType,
                    $"{spec} b={batch}: '{names[i]}' inferred {expected}, ONNX Runtime gives {actual[i]}");
            }
        }
    }

    [Theory]
    [InlineData("zoo:resnet50", "logits", "[batch, 1000]")]
    [InlineData("zoo:mobilenetv2?size=160", "logits", "[batch, 1000]")]
    [InlineData("zoo:yolov8n", "output0", "[batch, 84, 8400]")]
    [InlineData("zoo:yolov8n?size=320", "output0", "[batch, 84, 2100]")]
    [InlineData("zoo:bert", "last_hidden_state", "[batch, 128, 768]")]
    public void A_symbolic_batch_flows_through_to_the_outputs(string spec, string output, string expected)
    {
        var result = ShapeInference.Run(ModelZoo.BuildStructure(spec));
        Assert.Equal(expected, result[output].DimsText);
        Assert.Equal(ElementType.Float, result[output].ElementType);
    }

    [Fact]
    public void The_size_option_changes_the_inferred_shapes()
    {
        var at224 = ShapeInference.Run(ModelZoo.BuildStructure("resnet18"));
        var at640 = ShapeInference.Run(ModelZoo.BuildStructure("resnet18?size=640"));
        var firstConv = ModelZoo.BuildStructure("resnet18").Graph.Node[0].Output[0];
        Assert.Equal("[batch, 64, 112, 112]", at224[firstConv].DimsText);
        Assert.Equal("[batch, 64, 320, 320]", at640[firstConv].DimsText);
    }

    [Fact]
    public void Shape_arithmetic_resolves_reshape_targets_with_a_symbolic_batch()
    {
        var g = new GraphBuilder("shape-arith");
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        var shape = g.Node("Shape", [x]);
        var n = g.Node("Gather", [shape, g.Int64s("zero", [0], [])], GraphBuilder.Attr("axis", 0L));
        var target = g.Node("Concat", [g.Node("Unsqueeze", [n, g.Int64s("axes", [0])]), g.Int64s("rest", [-1])], GraphBuilder.Attr("axis", 0L));
        var flat = g.Node("Reshape", [x, target]);
        var sliced = g.Node("Slice", [flat, g.Int64s("starts", [10]), g.Int64s("ends", [long.MaxValue]), g.Int64s("axes1", [1])]);
        var doubled = g.Node("Reshape", [x, g.Int64s("two", [-1, 2, 96])]);
        g.Output(sliced, ElementType.Float, "batch", 182L);
        g.Output(doubled, ElementType.Float, "batch", 2L, 96L);
        var model = g.Build("shape-arith");

        var symbolic = ShapeInference.Run(model);
        Assert.Equal("[batch, 192]", symbolic[flat].DimsText);
        Assert.Equal("[batch, 182]", symbolic[sliced].DimsText);
        Assert.Equal("[batch, 2, 96]", symbolic[doubled].DimsText);
        Assert.False(symbolic.TryGetConstant(target, out _));

        var concrete = ShapeInference.Run(model, new Dictionary<string, long> { ["batch"] = 4 });
        Assert.True(concrete.TryGetConstant(target, out var values));
        Assert.Equal([4L, -1L], values);
        Assert.Equal([4L, 192L], concrete[flat].ToArray());
    }

    [Fact]
    public void Every_listed_operator_agrees_with_onnx_runtime()
    {
        var g = new GraphBuilder("ops");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 10L, 10L);
        var y = g.Node("Tanh", [x]);
        y = g.Node("LeakyRelu", [y], GraphBuilder.Attr("alpha", 0.1f));
        y = g.Node("HardSigmoid", [y]);
        y = g.Node("HardSwish", [y]);
        y = g.Node("Exp", [y]);
        y = g.Node("AveragePool", [y], GraphBuilder.Attr("kernel_shape", 3L, 3L), GraphBuilder.Attr("strides", 2L, 2L), GraphBuilder.Attr("ceil_mode", 1L));
        y = g.Node("Pad", [y, g.Int64s("pads", [0, 0, 1, 2, 0, 0, 3, 4])]);
        var mean = g.Node("ReduceMean", [y], GraphBuilder.Attr("axes", 2L, 3L), GraphBuilder.Attr("keepdims", 1L));
        var squeezed = g.Node("Squeeze", [mean, g.Int64s("sq", [2, 3])]);
        var expanded = g.Node("Expand", [g.Node("Unsqueeze", [squeezed, g.Int64s("us", [2])]), g.Int64s("to", [1, 1, 6])]);
        var condition = g.Node("Cast", [expanded], GraphBuilder.Attr("to", (long)ElementType.Bool));
        var chosen = g.Node("Where", [condition, expanded, g.Scalar(2f)]);
        var power = g.Node("Sqrt", [g.Node("Pow", [chosen, g.Scalar(2f)])]);
        var parts = g.NodeN("Split", [power, g.Int64s("split", [2, 4])], 2, GraphBuilder.Attr("axis", 2L));
        var maxPooled = g.Node("MaxPool", [x], GraphBuilder.Attr("kernel_shape", 2L, 2L), GraphBuilder.Attr("strides", 2L, 2L));
        var resized = g.Node("Resize", [maxPooled, string.Empty, g.Initializer("scales", [4], [1f, 1f, 1.5f, 2f])], GraphBuilder.Attr("mode", "nearest"));
        var sized = g.Node("Resize", [maxPooled, string.Empty, string.Empty, g.Int64s("sizes", [1, 4, 7, 3])], GraphBuilder.Attr("mode", "nearest"));
        var gathered = g.Node("Gather", [x, g.Int64s("idx", [1, 3, 1], [3])], GraphBuilder.Attr("axis", 1L));
        var flat = g.Node("Flatten", [gathered], GraphBuilder.Attr("axis", -1L));
        var mm = g.Node("MatMul", [g.Node("Transpose", [x], GraphBuilder.Attr("perm", 0L, 2L, 3L, 1L)), g.Initializer("w", [4, 5], new float[20])]);
        var ln = g.LayerNorm(mm, 5);
        var sm = g.Node("Softmax", [g.Node("Div", [g.Node("Sub", [ln, g.Scalar(1f)]), g.Scalar(3f)])], GraphBuilder.Attr("axis", -1L));
        var clipped = g.Node("Clip", [g.Node("Erf", [sm]), g.Scalar(0f), g.Scalar(6f)]);
        var constant = g.Node("Constant", [], GraphBuilder.Attr("value_ints", 2L, 3L));
        var shapeOf = g.Node("Shape", [clipped], GraphBuilder.Attr("start", 1L), GraphBuilder.Attr("end", -1L));
        var sum = g.Node("Add", [shapeOf, constant]);
        foreach (var o in new[] { parts[0], parts[1], resized, sized, flat, clipped, sum })
        {
            g.Output(o, ElementType.Undefined);
        }

        var model = g.Build("ops");
        var inferred = ShapeInference.Run(model, new Dictionary<string, long> { ["batch"] = 1 });
        var (names, actual) = RunExposingEveryValue(model, inferred, 1);
        for (var i = 0; i < names.Count; i++)
        {
            Assert.True(
                inferred[names[i]].ToArray().SequenceEqual(actual[i].Shape) && inferred[names[i]].ElementType == actual[i].ElementType,
                $"'{names[i]}' inferred {inferred[names[i]]}, ONNX Runtime gives {actual[i]}");
        }

        Assert.True(inferred.TryGetConstant(sum, out var s));
        Assert.Equal([12L, 13L], s);
    }

    /// <summary>
    /// Swin's window padding: the pads of a Pad come from the input's shape through Gather, Sub, Mod, Cast, Div, Ceil,
    /// ReduceMax and Concat; every value that depends only on shapes and constants must fold, whatever computes it.
    /// </summary>
    internal static OnnxModel SwinWindowPadding(string name = "swin-pad")
    {
        var g = new GraphBuilder(name);
        var x = g.Input("x", ElementType.Float, "batch", 13L, 10L, 8L);
        var shape = g.Node("Shape", [x]);
        var window = g.Int64s("window", [7], []);
        string PadFor(int axis)
        {
            var size = g.Node("Gather", [shape, g.Int64s($"axis{axis}", [axis], [])], GraphBuilder.Attr("axis", 0L));
            var byMod = g.Node("Mod", [g.Node("Sub", [window, g.Node("Mod", [size, window])]), window]);

            // The same pad computed another way: ceil(size / window) * window - size, through floats.
            var asFloat = g.Node("Cast", [size], GraphBuilder.Attr("to", (long)ElementType.Float));
            var windows = g.Node("Ceil", [g.Node("Div", [asFloat, g.Node("Cast", [window], GraphBuilder.Attr("to", (long)ElementType.Float))])]);
            var rounded = g.Node("Cast", [g.Node("Mul", [windows, g.Scalar(7f)])], GraphBuilder.Attr("to", (long)ElementType.Int64));
            var byCeil = g.Node("Sub", [rounded, size]);
            var both = g.Node("Concat", [g.Node("Unsqueeze", [byMod, g.Int64s($"u{axis}", [0])]), g.Node("Unsqueeze", [byCeil, g.Int64s($"v{axis}", [0])])], GraphBuilder.Attr("axis", 0L));
            return g.Node("Unsqueeze", [g.Node("ReduceMax", [both], GraphBuilder.Attr("keepdims", 0L)), g.Int64s($"w{axis}", [0])]);
        }

        var zero = g.Int64s("zeros", [0, 0]);
        var pads = g.Node("Concat", [zero, g.Int64s("zero1", [0]), zero, PadFor(1), PadFor(2), g.Int64s("zero2", [0])], GraphBuilder.Attr("axis", 0L));
        var padded = g.Rename(g.Node("Pad", [x, pads]), "y");
        g.Output(padded, ElementType.Float, "batch", 14L, 14L, 8L);
        return g.Build(name);
    }

    [Fact]
    public void Pads_computed_from_shapes_fold_whatever_operators_compute_them()
    {
        var model = SwinWindowPadding();
        Assert.Equal("[batch, 14, 14, 8]", ShapeInference.Run(model)["y"].DimsText);
        var concrete = ShapeInference.Run(model, new Dictionary<string, long> { ["batch"] = 3 });
        Assert.Equal([3L, 14, 14, 8], concrete["y"].ToArray());

        using var session = new OrtEngine().Load(model, new EngineOptions());
        Assert.Equal([3L, 14, 14, 8], session.Run([ZooModelTests.RandomInput(session.Inputs[0], 3)])[0].Shape);
    }

    [Fact]
    public void An_unsupported_operator_is_named_with_its_node()
    {
        var g = new GraphBuilder("bad");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        g.Output(g.Node("Hardmax", [x]), ElementType.Float, "batch", 4L);
        var e = Assert.Throws<BatchwiseException>(() => ShapeInference.Run(g.Build("bad")));
        Assert.Contains("Hardmax", e.Message, StringComparison.Ordinal);
        Assert.Contains("'hardmax'", e.Message, StringComparison.Ordinal);
        Assert.Contains("Conv", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Mismatched_matmul_dimensions_are_reported_at_the_node()
    {
        var g = new GraphBuilder("bad");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        g.Output(g.Node("MatMul", [x, g.Weight("w", [5, 3], 1f)]), ElementType.Float, "batch", 3L);
        var e = Assert.Throws<BatchwiseException>(() => ShapeInference.Run(g.Build("bad")));
        Assert.Contains("MatMul node 'matmul'", e.Message, StringComparison.Ordinal);
        Assert.Contains("inner dimensions differ", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Runs the model in ONNX Runtime with every node output declared as a graph output.</summary>
    private static (List<string> Names, IReadOnlyList<Tensor> Outputs) RunExposingEveryValue(OnnxModel model, ShapeInferenceResult inferred, long batch)
    {
        var proto = model.Proto.Clone();
        proto.Graph.Output.Clear();
        var names = proto.Graph.Node.Where(n => n.OpType != "Constant").SelectMany(n => n.Output).Where(o => o.Length > 0).ToList();
        foreach (var name in names)
        {
            proto.Graph.Output.Add(new OnnxProto.ValueInfoProto
            {
                Name = name,
                Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)inferred[name].ElementType } },
            });
        }

        var exposed = OnnxModel.FromProto(proto, model.Name);
        using var session = new OrtEngine().Load(exposed, new EngineOptions { GraphOptimization = "disabled" });
        var inputs = session.Inputs.Select(i => ZooModelTests.RandomInput(i, batch)).ToList();
        return (names, session.Run(inputs));
    }
}
