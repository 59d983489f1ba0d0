using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class StagingLayoutTests
{
    [Fact]
    public void Tensors_start_aligned_in_order_and_never_overlap()
    {
        long[] sizes = [602112, 3, 0, 4000, 256];
        var layout = StagingLayout.Of(sizes);

        Assert.Equal(sizes, layout.Bytes);
        Assert.All(layout.Offsets, o => Assert.Equal(0, o % StagingLayout.Alignment));
        for (var i = 1; i < sizes.Length; i++)
        {
            Assert.True(layout.Offsets[i] >= layout.Offsets[i - 1] + sizes[i - 1], $"tensor {i} overlaps tensor {i - 1}");
        }

        Assert.True(layout.TotalBytes >= layout.Offsets[^1] + sizes[^1]);
        Assert.Equal(602112 + 256 + 4096 + 256, layout.TotalBytes);
    }

    [Fact]
    public void Empty_tensors_take_no_space()
    {
        var layout = StagingLayout.Of([0, 0]);
        Assert.Equal(0, layout.TotalBytes);
        Assert.Equal([0L, 0L], layout.Offsets);
    }

    [Fact]
    public void A_negative_size_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => StagingLayout.Of([16, -1]));
    }
}
