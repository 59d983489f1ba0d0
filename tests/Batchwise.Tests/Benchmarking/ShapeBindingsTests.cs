using Batchwise.Benchmarking;
using Batchwise.Onnx;
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
        Assert.Contains("2 dynamic dimensions have no size: 'input_ids' [batch, seq] dimension 1 ('seq'); 'attention_mask' [batch, seq] dimension 1 ('seq')", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("e.g. --shape seq=128.", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_dynamic_dimension_is_named_at_once_and_the_suggested_command_works_as_printed()
    {
        // An image input with named height and an unnamed width, and a sequence input: three unsized dimensions.
        var g = new GraphBuilder("mixed");
        var image = g.Input("image", ElementType.Float, "batch", 3L, "height", string.Empty);
        var tokens = g.Input("tokens", ElementType.Float, "batch", "seq");
        g.Output(g.Rename(g.Node("ReduceMean", [image], GraphBuilder.Attr("keepdims", 0L)), "a"), ElementType.Float);
        g.Output(g.Rename(g.Node("ReduceMean", [tokens], GraphBuilder.Attr("keepdims", 0L)), "b"), ElementType.Float);
        var model = g.Build("mixed");
        var axis = model.FindBatchAxis();

        var e = Assert.Throws<BatchwiseException>(() => ShapeBindings.None.Resolve(model.Inputs, axis, 1));

        Assert.Contains("3 dynamic dimensions have no size", e.Message, StringComparison.Ordinal);
        Assert.Contains("'image' [batch, 3, height, ?] dimensions 2 ('height') and 3 ('?')", e.Message, StringComparison.Ordinal);
        Assert.Contains("'tokens' [batch, seq] dimension 1 ('seq')", e.Message, StringComparison.Ordinal);
        var hint = e.Hint!;
        var printed = hint[(hint.IndexOf("e.g. ", StringComparison.Ordinal) + 5)..].TrimEnd('.');
        Assert.Equal("--shape seq=128 --shape image:batch,3,224,224", printed);

        // Exactly what it printed resolves every input.
        var values = printed.Split("--shape ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var shapes = ShapeBindings.Parse(values).Resolve(model.Inputs, axis, 2);
        Assert.Equal([[2L, 3L, 224L, 224L], [2L, 128L]], shapes);
    }

    [Fact]
    public void Pin_fixes_every_dynamic_dimension_but_the_batch()
    {
        var model = TestModels.Tokens();
        var pinned = ShapeBindings.Parse(["seq=16"]).Pin(model);

        Assert.Equal("[batch, 16]", pinned.Inputs[0].ShapeText);
        Assert.Equal("[batch, 16]", pinned.Inputs[1].ShapeText);
        Assert.Equal("[batch, seq]", model.Inputs[0].ShapeText);
        Assert.Contains("no size", Assert.Throws<BatchwiseException>(() => ShapeBindings.None.Pin(model)).Message, StringComparison.Ordinal);
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
