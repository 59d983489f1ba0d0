using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

public sealed class ShapeTransformTests
{
    [Theory]
    [InlineData("zoo:resnet18?size=64")]
    [InlineData("zoo:resnet50?size=64")]
    [InlineData("zoo:mobilenetv2?size=64")]
    public void Input_size_fixes_the_spatial_size_of_fully_convolutional_models(string spec)
    {
        var (_, result) = TransformTestModels.CleanedUp(spec);
        new StaticInputSize(96, 128).Apply(result);
        Assert.Equal([128L, 96L], result.Inputs[0].Shape.Skip(2).Select(d => d.Value!.Value));
        Assert.True(result.Inputs[0].Shape[0].IsDynamic);
        var y = TransformTestModels.RunFirstOutput(result, batch: 2);
        Assert.Equal([2L, 1000L], y.Shape);
    }

    [Fact]
    public void Input_size_names_the_node_that_hard_codes_the_detector_grid()
    {
        var (_, result) = TransformTestModels.CleanedUp("zoo:yolov8n?size=64");
        var e = Assert.Throws<BatchwiseException>(() => new StaticInputSize(96, 96).Apply(result));
        Assert.Matches("Add|Sub|Mul|Concat", e.Message);
        Assert.Contains("hard-codes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Input_size_names_the_gemm_after_flatten_with_fixed_features()
    {
        var g = new GraphBuilder("flat");
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        var c = g.Node("Flatten", [g.Conv(x, 3, 4, 3)], GraphBuilder.Attr("axis", 1L));
        var y = g.Rename(g.Gemm(c, 4 * 8 * 8, 10, "classifier"), "logits");
        g.Output(y, ElementType.Float, "batch", 10L);
        var model = g.Build("flat");
        var e = Assert.Throws<BatchwiseException>(() => new StaticInputSize(16, 16).Apply(model));
        Assert.Contains("Gemm 'gemm'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Input_size_refuses_a_model_without_image_inputs_and_bad_text()
    {
        var model = ModelZoo.Build("zoo:mlp");
        Assert.Contains("image input", Assert.Throws<BatchwiseException>(() => new StaticInputSize(8, 8).Apply(model)).Message, StringComparison.Ordinal);
        Assert.Throws<BatchwiseException>(() => StaticInputSize.Parse("320x"));
        Assert.Throws<BatchwiseException>(() => StaticInputSize.Parse("0x10"));
    }

    [Fact]
    public void Dynamic_batch_rewrites_a_batch_1_export_and_batches_agree_with_single_runs()
    {
        var model = BatchOneExport(reshapeShape: [1, -1]);
        Assert.False(model.FindBatchAxis().IsBatchable);

        var summary = new DynamicBatch().Apply(model);

        Assert.Contains("1 Reshape", summary, StringComparison.Ordinal);
        Assert.True(model.FindBatchAxis().IsBatchable);
        using var session = new OrtEngine().Load(model, new EngineOptions());
        var y = session.Run(SeededInputs.Create(model, 5))[0];
        Assert.Equal([5L, 10L], y.Shape);
    }

    [Fact]
    public void Dynamic_batch_names_the_reshape_that_bakes_the_batch_into_features()
    {
        // Reshape to [4 * 8 * 8] (rank 1) folds the batch away: batch 2 cannot run.
        var model = BatchOneExport(reshapeShape: [4 * 8 * 8]);
        var e = Assert.Throws<BatchwiseException>(() => new DynamicBatch().Apply(model));
        Assert.Contains("Reshape", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(TransformTestModels.All), MemberType = typeof(TransformTestModels))]
    public void Dynamic_batch_leaves_already_batchable_zoo_models_alone_and_they_pass_the_batch_check(string spec)
    {
        var (_, result) = TransformTestModels.CleanedUp(spec);
        var summary = new DynamicBatch().Apply(result);
        Assert.StartsWith("batch axis made dynamic on 0 inputs/outputs", summary, StringComparison.Ordinal);
    }

    private static OnnxModel BatchOneExport(long[] reshapeShape)
    {
        var g = new GraphBuilder("b1");
        var x = g.Input("x", ElementType.Float, 1L, 3L, 8L, 8L);
        var c = g.Node("Relu", [g.Conv(x, 3, 4, 3)]);
        var flat = g.Node("Reshape", [c, g.Int64s("shape", reshapeShape)]);
        if (reshapeShape.Length == 1)
        {
            flat = g.Node("Unsqueeze", [flat, g.Int64s("axes", [0])]);
        }

        var y = g.Rename(g.Gemm(flat, 4 * 8 * 8, 10), "logits");
        g.Output(y, ElementType.Float, 1L, 10L);
        return g.Build("b1");
    }
}
