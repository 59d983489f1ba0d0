using Batchwise.Benchmarking;
using Batchwise.Zoo;

namespace Batchwise.Tests.Benchmarking;

public sealed class ShapeBindingsTests
{
    [Fact]
    public void Symbol_binding_sizes_that_dimension_in_every_input()
    {
        var model = TestModels.Tokens();
        var shapes = ShapeBindings.Parse(["seq=16"]).Resolve(model.Inputs, model.FindBatchAxis(), 8);
        Assert.Equal([[8L, 16L], [8L, 16L], [8L, 4L]], shapes);
    }

    [Fact]
    public void Input_shape_with_batch_word_takes_the_batch_size()
    {
        var model = TestModels.Tokens();
        var shapes = ShapeBindings.Parse(["input_ids:batch,32", "attention_mask:N,32"]).Resolve(model.Inputs, model.FindBatchAxis(), 2);
        Assert.Equal([2L, 32L], shapes[0]);
        Assert.Equal([2L, 32L], shapes[1]);
    }

    [Fact]
    public void Missing_size_names_the_input_the_dimension_and_the_flag()
    {
        var model = TestModels.Tokens();
        var e = Assert.Throws<BatchwiseException>(() => ShapeBindings.None.Resolve(model.Inputs, model.FindBatchAxis(), 1));
        Assert.Contains("Input 'input_ids' has dynamic dimension 1 ('seq')", e.Message, StringComparison.Ordinal);
        Assert.Contains("--shape seq=SIZE", e.Hint, StringComparison.Ordinal);
        Assert.Contains("--shape input_ids:batch,SIZE", e.Hint, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("seq")]
    [InlineData("seq=abc")]
    [InlineData("seq=0")]
    [InlineData("input_ids:batch,x")]
    public void Malformed_values_are_rejected_with_the_syntax(string value)
    {
        var e = Assert.Throws<BatchwiseException>(() => ShapeBindings.Parse([value]));
        Assert.Contains(value, e.Message, StringComparison.Ordinal);
        Assert.Contains("--shape", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_input_lists_the_model_inputs()
    {
        var model = TestModels.Tokens();
        var e = Assert.Throws<BatchwiseException>(() => ShapeBindings.Parse(["pixels:batch,3"]).Resolve(model.Inputs, model.FindBatchAxis(), 1));
        Assert.Contains("'pixels'", e.Message, StringComparison.Ordinal);
        Assert.Contains("input_ids", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_symbol_lists_the_model_symbols()
    {
        var model = TestModels.Tokens();
        var e = Assert.Throws<BatchwiseException>(() => ShapeBindings.Parse(["sequence=8"]).Resolve(model.Inputs, model.FindBatchAxis(), 1));
        Assert.Contains("'sequence'", e.Message, StringComparison.Ordinal);
        Assert.Contains("seq", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_rank_and_fixed_dimension_conflicts_are_errors()
    {
        var model = TestModels.Tokens();
        var axis = model.FindBatchAxis();
        Assert.Contains("has 3 dimensions", Assert.Throws<BatchwiseException>(() => ShapeBindings.Parse(["input_ids:batch,8,8", "seq=8"]).Resolve(model.Inputs, axis, 1)).Message, StringComparison.Ordinal);
        Assert.Contains("fixes it at 4", Assert.Throws<BatchwiseException>(() => ShapeBindings.Parse(["flag:batch,5", "seq=8"]).Resolve(model.Inputs, axis, 1)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Input_names_with_colons_split_at_the_last_colon()
    {
        var b = ShapeBindings.Parse(["input:0:batch,3"]);
        Assert.Equal(["batch", "3"], b.InputShapes["input:0"]);
    }

    [Fact]
    public void Static_model_needs_no_bindings()
    {
        var model = ModelZoo.Build("zoo:mlp");
        Assert.Equal([4L, 64L], ShapeBindings.None.Resolve(model.Inputs, model.FindBatchAxis(), 4)[0]);
    }
}
