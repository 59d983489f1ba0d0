using Batchwise.Benchmarking;

namespace Batchwise.Tests.Benchmarking;

public sealed class MemoryForecastTests
{
    [Fact]
    public void Peak_memory_extrapolates_linearly_from_the_last_two_batch_sizes()
    {
        // 100 MB at b=4, 140 MB at b=8: 10 MB a sample, so 220 MB at b=16.
        Assert.Equal(220_000_000L, MemoryForecast.Predict([(2, 90_000_000L), (4, 100_000_000L), (8, 140_000_000L)], 16));
    }

    [Fact]
    public void Several_concurrency_levels_use_the_largest_peak_per_batch()
    {
        Assert.Equal(300L, MemoryForecast.Predict([(1, 100L), (1, 150L), (2, 200L), (2, 225L)], 3));
    }

    [Fact]
    public void Shrinking_memory_never_predicts_less_than_the_last_peak()
    {
        Assert.Equal(90L, MemoryForecast.Predict([(1, 100L), (2, 90L)], 64));
    }

    [Fact]
    public void One_batch_size_predicts_nothing()
    {
        Assert.Null(MemoryForecast.Predict([(1, 100L), (1, 120L)], 2));
    }

    [Fact]
    public void Available_memory_is_known()
    {
        Assert.True(MemoryForecast.AvailableBytes > 0);
    }
}
