using Batchwise.Engines;

namespace Batchwise.Tests.Engines;

public sealed class ShapeProfileTests
{
    [Fact]
    public void A_profile_parses_to_a_bounded_grid()
    {
        var p = ShapeProfile.Parse("images:1x3x320x320..1x3x416x384:32");

        Assert.Equal("images", p.Input);
        Assert.Equal([1L, 3, 320, 320], p.Min);
        Assert.Equal([1L, 3, 416, 384], p.Max);
        var grid = p.Grid(batch: 4).ToList();
        Assert.Equal(4 * 3, grid.Count); // H in 320..416 (4 values) x W in 320..384 (3 values)
        Assert.All(grid, s => Assert.Equal(4, s[0]));
        Assert.Contains(grid, s => s.SequenceEqual(new long[] { 4, 3, 352, 384 }));
        Assert.Equal("images:1x3x320x320..1x3x416x384:32", p.Text);
    }

    [Theory]
    [InlineData(new long[] { 8, 3, 352, 320 }, null)]
    [InlineData(new long[] { 1, 3, 330, 320 }, "off its shape profile's grid")]
    [InlineData(new long[] { 1, 3, 448, 320 }, "outside its shape profile")]
    [InlineData(new long[] { 1, 3, 320 }, "of rank 3")]
    public void Shapes_off_the_grid_or_outside_it_are_named(long[] shape, string? why)
    {
        var p = ShapeProfile.Parse("images:1x3x320x320..1x3x416x384:32");

        var problem = p.Check(shape, batched: true);

        if (why is null)
        {
            Assert.Null(problem);
        }
        else
        {
            Assert.Contains(why, problem, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("images", "NAME:MIN..MAX")]
    [InlineData("images:1x3x320..1x3x416:0", "step '0'")]
    [InlineData("images:1x3x320..1x3", "MIN has 3 dimensions and MAX 2")]
    [InlineData("images:1x3x416..1x3x320", "goes from 416 down to 320")]
    [InlineData("images:1x3x320..1x3x400:32", "not a whole number of steps of 32")]
    [InlineData("images:1x3xH..1x3x400", "'H' is not a positive integer")]
    public void A_bad_profile_is_one_line_that_teaches_the_syntax(string text, string why)
    {
        var e = Assert.Throws<BatchwiseException>(() => ShapeProfile.Parse(text));

        Assert.Contains(why, e.Message, StringComparison.Ordinal);
        Assert.Contains(ShapeProfile.Syntax, e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void The_ort_engine_refuses_profiles_it_would_ignore()
    {
        var model = Batchwise.Zoo.ModelZoo.Build("zoo:mlp");
        var e = Assert.Throws<BatchwiseException>(() => new OrtEngine().Load(model, new EngineOptions { BatchProfiles = [1, 8] }));
        Assert.Contains("profiles are for the cuda engine", e.Message, StringComparison.Ordinal);
    }
}
