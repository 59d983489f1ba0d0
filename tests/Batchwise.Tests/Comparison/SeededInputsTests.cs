using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Comparison;

public sealed class SeededInputsTests
{
    [Fact]
    public void The_same_seed_gives_the_same_inputs_and_another_seed_other_inputs()
    {
        var model = ModelZoo.Build("mlp");
        var shapes = SeededInputs.ResolveShapes(model, 4, new Dictionary<string, long[]>());
        var a = SeededInputs.Generate(model, shapes, seed: 7);
        var b = SeededInputs.Generate(model, shapes, seed: 7);
        var c = SeededInputs.Generate(model, shapes, seed: 8);
        Assert.Equal([4L, 64], a[0].Shape);
        Assert.Equal(a[0].Data, b[0].Data);
        Assert.NotEqual(a[0].Data, c[0].Data);
    }

    [Fact]
    public void Normal_inputs_have_mean_zero_and_unit_spread_and_uniform_ones_lie_in_0_1()
    {
        var model = ModelZoo.Build("mlp");
        var shapes = new[] { new long[] { 256, 64 } };
        var normal = SeededInputs.Generate(model, shapes, 1)[0].ToDoubles();
        var mean = normal.Average();
        var std = Math.Sqrt(normal.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, -0.05, 0.05);
        Assert.InRange(std, 0.95, 1.05);

        var uniform = SeededInputs.Generate(model, shapes, 1, InputDistribution.Uniform)[0].ToDoubles();
        Assert.All(uniform, v => Assert.InRange(v, 0, 1));
        Assert.InRange(uniform.Average(), 0.45, 0.55);
    }

    [Fact]
    public void Token_ids_stay_within_the_embedding_table_they_index_and_masks_are_ones()
    {
        var model = EmbeddingModel(vocabulary: 7);
        var shapes = SeededInputs.ResolveShapes(model, 2, new Dictionary<string, long[]> { ["seq"] = [50] });
        Assert.Equal([2L, 50], shapes[0]);
        var inputs = SeededInputs.Generate(model, shapes, seed: 3);
        var ids = inputs[0].AsSpan<long>().ToArray();
        Assert.All(ids, v => Assert.InRange(v, 0, 6));
        Assert.Equal(6, ids.Max());
        Assert.All(inputs[1].AsSpan<long>().ToArray(), v => Assert.Equal(1, v));

        // And ONNX Runtime accepts them.
        using var session = new OrtEngine().Load(model, new EngineOptions());
        Assert.Equal([2L, 50, 4], session.Run(inputs)[0].Shape);
    }

    [Fact]
    public void Shapes_come_from_the_batch_size_symbols_and_whole_input_overrides()
    {
        var model = EmbeddingModel(vocabulary: 7);
        var byInput = SeededInputs.ResolveShapes(model, 1, SeededInputs.ParseShapes(["input_ids:3x9", "attention_mask:3,9"]));
        Assert.Equal([3L, 9], byInput[0]);
        Assert.Equal([3L, 9], byInput[1]);

        var missing = Assert.Throws<BatchwiseException>(() => SeededInputs.ResolveShapes(model, 1, new Dictionary<string, long[]>()));
        Assert.Contains("--shape seq:N", missing.OneLine, StringComparison.Ordinal);

        var unknown = Assert.Throws<BatchwiseException>(() => SeededInputs.ResolveShapes(model, 1, SeededInputs.ParseShapes(["pixels:1x3"])));
        Assert.Contains("'pixels'", unknown.Message, StringComparison.Ordinal);

        Assert.Throws<BatchwiseException>(() => SeededInputs.ParseShapes(["seq"]));
        Assert.Throws<BatchwiseException>(() => SeededInputs.ParseShapes(["seq:0"]));
        Assert.Throws<BatchwiseException>(() => SeededInputs.ResolveShapes(model, 0, new Dictionary<string, long[]>()));
    }

    [Fact]
    public void A_whole_shape_override_may_not_change_a_fixed_dimension()
    {
        var model = ModelZoo.Build("mlp");
        var e = Assert.Throws<BatchwiseException>(() => SeededInputs.ResolveShapes(model, 1, SeededInputs.ParseShapes(["input:2x63"])));
        Assert.Contains("fixes it at 64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cast_converts_values_between_element_types()
    {
        var t = Tensor.From<float>(ElementType.Float, [3], [1.5f, -2f, 0.1f]);
        var h = SeededInputs.Cast(t, ElementType.Float16);
        Assert.Equal(ElementType.Float16, h.ElementType);
        Assert.Equal([1.5, -2, (double)(Half)0.1f], h.ToDoubles());
        Assert.Same(t, SeededInputs.Cast(t, ElementType.Float));
    }

    /// <summary>input_ids [batch, seq] → Gather(embedding [vocabulary, 4]) → Mul by the mask (cast to float, unsqueezed).</summary>
    internal static OnnxModel EmbeddingModel(long vocabulary)
    {
        var g = new GraphBuilder("embed", seed: 1);
        var ids = g.Input("input_ids", ElementType.Int64, "batch", "seq");
        var mask = g.Input("attention_mask", ElementType.Int64, "batch", "seq");
        var table = g.Weight("embedding", [vocabulary, 4], 1f);
        var gathered = g.Node("Gather", [table, ids], GraphBuilder.Attr("axis", 0L));
        var maskF = g.Node("Cast", [mask], GraphBuilder.Attr("to", (long)ElementType.Float));
        var axes = g.Int64s("axes", [2]);
        var mask3 = g.Node("Unsqueeze", [maskF, axes]);
        var y = g.Rename(g.Node("Mul", [gathered, mask3]), "hidden");
        g.Output(y, ElementType.Float, "batch", "seq", 4L);
        return g.Build("embed");
    }
}
