using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

public sealed class OpsetConversionTests
{
    public static TheoryData<string, long> OldModelsAndTargets()
    {
        var data = new TheoryData<string, long>();
        foreach (var (name, opset) in new[] { ("opset7", 7L), ("opset9", 9L), ("opset10", 10L), ("opset11", 11L) })
        {
            foreach (var target in new long[] { 11, 13, 17, 21 }.Where(t => t > opset))
            {
                data.Add(name, target);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(OldModelsAndTargets))]
    public void Up_conversion_gives_the_same_outputs_in_onnx_runtime(string name, long target)
    {
        var original = Build(name);
        var converted = OnnxModel.FromProto(original.Proto.Clone(), name);
        var summary = new OpsetConversion(target).Apply(converted);

        Assert.Equal(target, converted.Opset);
        Assert.Contains($"opset {original.Opset} -> {target}", summary, StringComparison.Ordinal);
        AssertSameOutputs(original, converted);
    }

    [Fact]
    public void Every_signature_change_of_the_old_models_is_rewritten_for_opset_21()
    {
        foreach (var name in new[] { "opset7", "opset9", "opset10", "opset11" })
        {
            var model = Build(name);
            new OpsetConversion(21).Apply(model);
            var nodes = model.Graph.Node;
            Assert.DoesNotContain(nodes, n => n.OpType is "Upsample" or "Scatter");
            Assert.DoesNotContain(nodes, n => n.OpType is "Split" or "Squeeze" or "Unsqueeze" or "ReduceSum" or "ReduceMean" or "ReduceMax" && n.Attribute.Any(a => a.Name is "axes" or "split"));
            Assert.DoesNotContain(nodes, n => n.OpType is "Clip" or "Pad" or "Slice" or "TopK" or "Dropout" && n.Attribute.Any(a => a.Name is "min" or "max" or "pads" or "value" or "starts" or "ends" or "k" or "ratio"));
            Assert.DoesNotContain(nodes, n => n.OpType == "BatchNormalization" && n.Attribute.Any(a => a.Name == "spatial"));
            Assert.All(nodes.Where(n => n.OpType == "Resize"), n => Assert.Equal(3, n.Input.Count));
            Assert.True(model.Proto.IrVersion >= 10, $"{name}: IR {model.Proto.IrVersion} is too old for opset 21");
        }
    }

    [Fact]
    public void Softmax_over_a_middle_axis_before_opset_13_becomes_flatten_softmax_reshape()
    {
        var model = OldOpsetModels.Opset9();
        var summary = new OpsetConversion(13).Apply(model);

        Assert.Contains("Softmax axis (coerced to 2-D)", summary, StringComparison.Ordinal);
        var softmax = model.Graph.Node.Single(n => n.OpType == "Softmax");
        Assert.Equal("Flatten", model.Graph.Node.Single(n => n.Output.Contains(softmax.Input[0])).OpType);

        // Hardmax reads a rank-2 tensor along its last axis: the same at opset 13, no rewrite.
        var hardmax = model.Graph.Node.Single(n => n.OpType == "Hardmax");
        Assert.NotEqual("Flatten", model.Graph.Node.Single(n => n.Output.Contains(hardmax.Input[0])).OpType);
    }

    [Fact]
    public void Upsample_becomes_resize_with_asymmetric_floor_coordinates()
    {
        var model = OldOpsetModels.Opset7();
        var summary = new OpsetConversion(17).Apply(model);

        Assert.Contains("Upsample -> Resize x2", summary, StringComparison.Ordinal);
        var nearest = model.Graph.Node.First(n => n.OpType == "Resize" && GraphText(n, "mode") == "nearest");
        Assert.Equal("asymmetric", GraphText(nearest, "coordinate_transformation_mode"));
        Assert.Equal("floor", GraphText(nearest, "nearest_mode"));
    }

    [Fact]
    public void Down_conversion_is_refused_in_one_line_naming_the_operators_that_changed()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var e = Assert.Throws<BatchwiseException>(() => new OpsetConversion(11).Apply(model));

        Assert.Contains("down from opset 17 to 11", e.Message, StringComparison.Ordinal);
        Assert.Contains("Softmax (changed at opset 13)", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.OneLine);
        Assert.Equal(17, model.Opset);
    }

    [Fact]
    public void Down_conversion_where_no_operator_changed_only_rewrites_the_import()
    {
        var g = new GraphBuilder("conv-only");
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        g.Output(g.Rename(g.Conv(x, 3, 4, 3), "y"), ElementType.Float, "batch", 4L, 8L, 8L);
        var original = g.Build("conv-only", opset: 17);
        var converted = OnnxModel.FromProto(original.Proto.Clone(), "conv-only");

        var summary = new OpsetConversion(11).Apply(converted);

        Assert.Equal(11, converted.Opset);
        Assert.Contains("no operator of the model changed", summary, StringComparison.Ordinal);
        AssertSameOutputs(original, converted);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(22)]
    public void Targets_outside_7_to_21_are_refused(long target)
    {
        var e = Assert.Throws<BatchwiseException>(() => new OpsetConversion(target));
        Assert.Contains($"--opset {target}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Batch_normalization_with_per_activation_statistics_is_refused_naming_the_node()
    {
        var model = OldOpsetModels.Opset7();
        var bn = model.Graph.Node.Single(n => n.OpType == "BatchNormalization");
        bn.Attribute.Single(a => a.Name == "spatial").I = 0;

        var e = Assert.Throws<BatchwiseException>(() => new OpsetConversion(13).Apply(model));
        Assert.Contains($"BatchNormalization '{bn.Name}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("spatial=0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_training_output_that_is_read_is_refused()
    {
        var g = new GraphBuilder("dropout-mask");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        var outs = g.NodeN("Dropout", [x], 2, GraphBuilder.Attr("ratio", 0.5f));
        g.Output(g.Rename(outs[0], "y"), ElementType.Float, "batch", 4L);
        g.Output(g.Rename(outs[1], "mask"), ElementType.Float, "batch", 4L);
        var model = g.Build("dropout-mask", opset: 9);

        var e = Assert.Throws<BatchwiseException>(() => new OpsetConversion(13).Apply(model));
        Assert.Contains("'mask'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Image_scaler_of_old_exports_becomes_mul_and_add()
    {
        var g = new GraphBuilder("scaler");
        var x = g.Input("x", ElementType.Float, "batch", 3L, 4L, 4L);
        var bias = new global::Onnx.AttributeProto { Name = "bias", Type = global::Onnx.AttributeProto.Types.AttributeType.Floats };
        bias.Floats.AddRange([-1f, 0.5f, 2f]);
        var y = g.Node("ImageScaler", [x], GraphBuilder.Attr("scale", 0.5f), bias);
        g.Output(g.Rename(g.Node("Relu", [y]), "y"), ElementType.Float, "batch", 3L, 4L, 4L);
        var model = g.Build("scaler", opset: 8);

        new OpsetConversion(13).Apply(model);

        Assert.DoesNotContain(model.Graph.Node, n => n.OpType == "ImageScaler");
        using var session = new OrtEngine().Load(model, new EngineOptions());
        var input = SeededInputs.Create(model, 1);
        var output = session.Run(input)[0].ToDoubles();
        var xs = input[0].ToDoubles();
        float[] b = [-1f, 0.5f, 2f];
        for (var i = 0; i < xs.Length; i++)
        {
            Assert.Equal(Math.Max(0, (0.5 * xs[i]) + b[i / 16]), output[i], 1e-5); // float32 arithmetic, with or without FMA
        }
    }

    [Fact]
    public void An_unknown_default_domain_operator_is_refused_naming_it()
    {
        var g = new GraphBuilder("unknown");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        g.Output(g.Rename(g.Node("NotAnOnnxOp", [x]), "y"), ElementType.Float, "batch", 4L);
        var model = g.Build("unknown", opset: 11);

        var e = Assert.Throws<BatchwiseException>(() => new OpsetConversion(17).Apply(model));
        Assert.Contains("'NotAnOnnxOp' is not an operator of the default ONNX domain", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("opset9", "fp16", 13)]
    [InlineData("opset11", "int8", 13)]
    [InlineData("opset9", "int8-dynamic", 11)]
    public void Precision_levers_convert_an_old_model_first_and_say_so(string name, string lever, long needed)
    {
        var options = new OptimizeOptions
        {
            Fp16 = lever == "fp16",
            Int8 = lever == "int8",
            Calibration = lever == "int8" ? "random:4" : null,
            Int8Dynamic = lever == "int8-dynamic",
            VerifyBatchSizes = [1],
            BenchSeconds = 0.05,
        };

        var (result, report) = OptimizationPipeline.Run(Build(name), options);

        Assert.Equal(needed, result.Opset);
        Assert.Equal("opset", report.Steps[0].Name);
        Assert.Contains($"(--{lever} needs opset {needed})", report.Steps[0].Summary, StringComparison.Ordinal);
        Assert.Null(report.AgreementError);
        // Continuous outputs only: a one-hot Hardmax or TopK's indices flip where quantization reorders two close logits.
        Assert.All(report.Agreement.Where(a => a.Output is not ("hardmax" or "top_indices")), a => Assert.True(a.Cosine >= 0.99, $"{a.Output}: cosine {a.Cosine}"));
    }

    [Fact]
    public void An_opset_older_than_the_precision_lever_needs_is_refused_before_anything_runs()
    {
        var e = Assert.Throws<BatchwiseException>(() => new OptimizeOptions { Fp16 = true, Opset = 11 }.CreateTransforms());
        Assert.Contains("--opset 11 is older than --fp16 needs (opset 13)", e.Message, StringComparison.Ordinal);
    }

    internal static OnnxModel Build(string name) => name switch
    {
        "opset7" => OldOpsetModels.Opset7(),
        "opset9" => OldOpsetModels.Opset9(),
        "opset10" => OldOpsetModels.Opset10(),
        "opset11" => OldOpsetModels.Opset11(),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    internal static void AssertSameOutputs(OnnxModel original, OnnxModel converted, double tolerance = 1e-5)
    {
        var inputs = SeededInputs.Create(original, 2, seed: 5);
        IReadOnlyList<Tensor> expected, actual;
        using (var a = new OrtEngine().Load(original, new EngineOptions()))
        {
            expected = a.Run(inputs);
        }

        using (var b = new OrtEngine().Load(converted, new EngineOptions()))
        {
            actual = b.Run(inputs);
        }

        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Shape, actual[i].Shape);
            Assert.Equal(expected[i].ElementType, actual[i].ElementType);
            var (e, a) = (expected[i].ToDoubles(), actual[i].ToDoubles());
            var worst = e.Zip(a, (x, y) => Math.Abs(x - y)).DefaultIfEmpty(0).Max();
            Assert.True(worst <= tolerance, $"{original.Name} output {original.Outputs[i].Name}: max difference {worst}");
            Assert.True(e.Max() - e.Min() > 1e-6, $"{original.Name} output {original.Outputs[i].Name} is constant: the comparison would prove nothing");
        }
    }

    private static string? GraphText(global::Onnx.NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name)?.S.ToStringUtf8();
}
