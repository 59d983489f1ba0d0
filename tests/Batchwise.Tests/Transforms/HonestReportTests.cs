using Batchwise.Benchmarking;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

/// <summary>optimize's report says what happened: both sides at the same shapes, failures that fail, every parameter counted.</summary>
public sealed class HonestReportTests
{
    private static readonly OptimizeOptions Quick = new() { VerifyBatchSizes = [1], BenchSeconds = 0.02 };

    [Fact]
    public void Input_size_on_a_dynamic_model_costs_and_benches_both_sides_at_the_new_size()
    {
        // The case: the "before" side was costed at a hidden default size, so an unchanged model read "+9850.7%" MACs.
        var (result, report) = OptimizationPipeline.Run(DynamicImageModel(), Quick with { InputSize = "80x96" });

        Assert.Equal("input [1, 3, 80, 96]", report.InputsBefore);
        Assert.Equal(report.InputsBefore, report.InputsAfter);
        Assert.Equal(report.Before!.ConvMacs, report.After!.ConvMacs);
        Assert.Equal(report.Before.TotalMacs, report.After.TotalMacs);
        Assert.True(report.Passed, report.Failure);
        Assert.Equal("[batch, 3, 80, 96]", result.Inputs[0].ShapeText);
    }

    [Fact]
    public void Shape_sizes_the_dynamic_dimensions_of_both_sides()
    {
        var (_, report) = OptimizationPipeline.Run(DynamicImageModel(), Quick with { Shapes = ShapeBindings.Parse(["height=48", "width=64"]) });

        Assert.Equal("input [1, 3, 48, 64]", report.InputsBefore);
        Assert.Equal(report.InputsBefore, report.InputsAfter);
        Assert.Equal(report.Before!.ConvMacs, report.After!.ConvMacs); // clean-up folds BatchNormalization into the convolutions: no MAC changes
        Assert.True(report.Passed, report.Failure);
    }

    [Fact]
    public void A_missing_shape_names_every_dynamic_dimension_before_anything_is_transformed()
    {
        var e = Assert.Throws<BatchwiseException>(() => OptimizationPipeline.Run(DynamicImageModel(), Quick with { Fp16 = true }));

        Assert.Contains("2 dynamic dimensions have no size: 'input' [batch, 3, height, width] dimensions 2 ('height') and 3 ('width')", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("--shape height=224 --shape width=224.", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Pruning_a_model_without_convolutions_fails_instead_of_pruning_nothing()
    {
        var e = Assert.Throws<BatchwiseException>(() => OptimizationPipeline.Run(ModelZoo.Build("zoo:mlp"), Quick with { Prune = 0.25 }));
        Assert.Contains("--prune 0.25 would prune nothing in 'mlp': it has no Conv", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pruning_where_every_channel_group_is_constrained_fails_naming_why()
    {
        // One convolution whose output is the graph output: its channels cannot change.
        var g = new GraphBuilder("constrained");
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        g.Output(g.Rename(g.Conv(x, 3, 8, 3), "y"), ElementType.Float, "batch", 8L, 8L, 8L);
        var e = Assert.Throws<BatchwiseException>(() => new ChannelPruning(0.5).Apply(g.Build("constrained")));
        Assert.Contains("all 1 channel groups are kept whole", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_collapsed_output_fails_whatever_the_max_error()
    {
        // The original's output is small but alive (|y| up to 1e-4); the result's is |x|*1e-4: max error 2e-4, cosine ~0.
        var original = Scaled("original", abs: false);
        var result = Scaled("result", abs: true);
        var batches = new[] { SeededInputs.Create(original, 8) };

        var a = Verification.Compare(original, result, batches, minCosine: 0.99).Single();

        Assert.True(a.MaxAbsError < 3e-4, $"max error {a.MaxAbsError}");
        Assert.InRange(a.Cosine, -0.2, 0.2);
        Assert.False(a.Passed);
        Assert.Contains("cosine", a.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_dead_output_fails_in_the_result_and_in_the_original()
    {
        var alive = Scaled("alive", abs: false);
        var dead = Scaled("dead", abs: false, factor: 0f);
        var batches = new[] { SeededInputs.Create(alive, 4) };

        var deadResult = Verification.Compare(alive, dead, batches, minCosine: 0).Single();
        Assert.Contains("the result's is all ~0", deadResult.Problem, StringComparison.Ordinal);

        // A detector whose random-input output is ~0 "agrees" with anything near 0: this data proves nothing.
        var deadOriginal = Verification.Compare(dead, dead, batches, minCosine: 0).Single();
        Assert.Equal(0, deadOriginal.MaxAbsError);
        Assert.Contains("the original's is all ~0", deadOriginal.Problem, StringComparison.Ordinal);
        Assert.Contains("on this data, so agreement proves nothing", deadOriginal.Problem, StringComparison.Ordinal);
        Assert.Contains("--calibration DIR", deadOriginal.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pruned_model_below_the_threshold_fails_the_report_and_the_report_says_which_output()
    {
        var (_, report) = OptimizationPipeline.Run(ModelZoo.Build("zoo:resnet18?size=32"), Quick with { Prune = 0.5, MinCosine = 0.999 });

        Assert.False(report.Passed);
        Assert.StartsWith("'logits': cosine", report.Failure, StringComparison.Ordinal);
    }

    [Fact]
    public void A_calibration_folder_is_the_verification_data_without_int8()
    {
        var dir = Directory.CreateTempSubdirectory("bw-verify-");
        try
        {
            var rng = new Random(3);
            for (var i = 0; i < 3; i++)
            {
                PrecisionTransformTests.WriteNpy(Path.Combine(dir.FullName, $"{i}.npy"), [3, 32, 32], Enumerable.Range(0, 3 * 32 * 32).Select(_ => (float)rng.NextDouble()).ToArray());
            }

            var (_, report) = OptimizationPipeline.Run(ModelZoo.Build("zoo:resnet18?size=32"), Quick with { Fp16 = true, Calibration = dir.FullName });

            Assert.Equal($"3 real samples from {dir.FullName}", report.VerificationData);
            Assert.True(report.Passed, report.Failure);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Weights_stored_in_constant_nodes_count_as_parameters()
    {
        var g = new GraphBuilder("constants");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        var w = g.Node("Constant", [], GraphBuilder.Attr("value", GraphSurgery.FloatTensor("w", [4, 3], new float[12])));
        var b = g.Node("Constant", [], GraphBuilder.Attr("value", GraphSurgery.FloatTensor("b", [3], new float[3])));
        var shape = g.Node("Constant", [], GraphBuilder.Attr("value", GraphSurgery.Int64Tensor("shape", [2], [-1, 3])));
        var y = g.Node("Reshape", [g.Node("Add", [g.Node("MatMul", [x, w]), b]), shape]);
        g.Output(g.Rename(y, "y"), ElementType.Float, "batch", 3L);
        var model = g.Build("constants");

        Assert.Equal(12 + 3, CostSummary.CountParameters(model)); // the int64 shape is not a weight
        Assert.Equal(12 + 3, model.LearnedParameterCount());
    }

    // ResNet-18 (fully convolutional up to its global pooling) with a dynamic height and width, as exporters write it.
    internal static OnnxModel DynamicImageModel()
    {
        var model = ModelZoo.Build("zoo:resnet18?size=32");
        var dims = model.Graph.Input[0].Type.TensorType.Shape.Dim;
        dims[2] = new global::Onnx.TensorShapeProto.Types.Dimension { DimParam = "height" };
        dims[3] = new global::Onnx.TensorShapeProto.Types.Dimension { DimParam = "width" };
        return OnnxModel.FromProto(model.Proto, "resnet18-dynamic");
    }

    // y = x * factor (or |x| * factor).
    private static OnnxModel Scaled(string name, bool abs, float factor = 1e-4f)
    {
        var g = new GraphBuilder(name);
        var x = g.Input("x", ElementType.Float, "batch", 64L);
        var source = abs ? g.Node("Abs", [x]) : x;
        g.Output(g.Rename(g.Node("Mul", [source, g.Scalar(factor)]), "y"), ElementType.Float, "batch", 64L);
        return g.Build(name);
    }
}
