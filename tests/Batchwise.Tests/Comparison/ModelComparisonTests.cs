using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Comparison;

public sealed class ModelComparisonTests
{
    private static readonly Tolerance Tolerance = new(1e-4, 1e-5);

    [Fact]
    public void One_model_on_the_same_engine_twice_agrees_exactly()
    {
        var model = ModelZoo.Build("mlp");
        var inputs = SeededInputs.Generate(model, [[8, 64]], seed: 0);
        var side = new ComparisonSide(new OrtEngine(), model, new EngineOptions());
        var result = ModelComparison.Run(side, side, inputs, Tolerance);
        Assert.True(result.Passed);
        var output = Assert.Single(result.Outputs);
        Assert.Equal("probabilities", output.Name);
        Assert.Equal(0, output.MaxAbsError);
        Assert.Equal(1.0, output.Cosine, 12);
        Assert.Equal(1.0, output.TopK!.Top1);
        Assert.Equal(8, output.TopK.Rows);
    }

    [Fact]
    public void Models_with_different_weights_fail_with_their_errors()
    {
        var a = ModelZoo.Build("mlp?seed=0");
        var b = ModelZoo.Build("mlp?seed=1");
        var inputs = SeededInputs.Generate(a, [[8, 64]], seed: 0);
        var result = ModelComparison.Run(new ComparisonSide(new OrtEngine(), a, new EngineOptions()), new ComparisonSide(new OrtEngine(), b, new EngineOptions()), inputs, Tolerance);
        Assert.False(result.Passed);
        Assert.True(result.Outputs[0].MaxAbsError > 1e-3);
        Assert.True(result.Outputs[0].Cosine < 0.9999);
    }

    [Fact]
    public void An_fp16_variant_gets_the_inputs_cast_to_its_type()
    {
        var fp32 = Identity(ElementType.Float);
        var fp16 = Identity(ElementType.Float16);
        var inputs = SeededInputs.Generate(fp32, [[2, 3]], seed: 0);
        var result = ModelComparison.Run(new ComparisonSide(new OrtEngine(), fp32, new EngineOptions()), new ComparisonSide(new OrtEngine(), fp16, new EngineOptions()), inputs, new Tolerance(1e-3, 1e-3));
        Assert.True(result.Passed);
        Assert.True(result.Outputs[0].MaxAbsError > 0, "fp16 rounding should show");
        Assert.Contains(result.Notes, n => n.Contains("cast from float32 to float16", StringComparison.Ordinal));
    }

    [Fact]
    public void A_candidate_with_an_input_the_reference_lacks_is_a_user_error()
    {
        var reference = ModelZoo.Build("mlp");
        var candidate = SeededInputsTests.EmbeddingModel(5);
        var inputs = SeededInputs.Generate(reference, [[1, 64]], seed: 0);
        var e = Assert.Throws<BatchwiseException>(() => ModelComparison.Run(new ComparisonSide(new OrtEngine(), reference, new EngineOptions()), new ComparisonSide(new OrtEngine(), candidate, new EngineOptions()), inputs, Tolerance));
        Assert.Contains("'input_ids'", e.Message, StringComparison.Ordinal);
    }

    private static OnnxModel Identity(ElementType type)
    {
        var g = new GraphBuilder("id");
        var x = g.Input("x", type, "batch", 3L);
        var y = g.Rename(g.Node("Identity", [x]), "y");
        g.Output(y, type, "batch", 3L);
        return g.Build("id_" + type.ShortName());
    }
}
