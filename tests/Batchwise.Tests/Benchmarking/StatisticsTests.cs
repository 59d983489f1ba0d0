using Batchwise.Benchmarking;

namespace Batchwise.Tests.Benchmarking;

public sealed class StatisticsTests
{
    private static readonly double[] OneToTen = [7, 3, 10, 1, 5, 9, 2, 8, 4, 6];

    [Theory]
    [InlineData(0, 1)]
    [InlineData(50, 5.5)]
    [InlineData(90, 9.1)]
    [InlineData(95, 9.55)]
    [InlineData(99, 9.91)]
    [InlineData(100, 10)]
    public void Percentiles_interpolate_between_ranks_like_numpy(double p, double expected)
    {
        var sorted = OneToTen.Order().ToArray();
        Assert.Equal(expected, Statistics.PercentileOfSorted(sorted, p), 9);
    }

    [Fact]
    public void Summary_of_unsorted_samples_has_mean_stddev_and_percentiles()
    {
        var s = Statistics.Summarize(OneToTen);
        Assert.Equal(10, s.Count);
        Assert.Equal(5.5, s.Mean, 9);
        Assert.Equal(3.0276503540974917, s.StdDev, 9); // numpy.std(ddof=1)
        Assert.Equal(1, s.Min);
        Assert.Equal(10, s.Max);
        Assert.Equal(5.5, s.P50, 9);
        Assert.Equal(9.1, s.P90, 9);
        Assert.Equal(9.91, s.P99, 9);

        // t(0.975, 9) = 2.262
        Assert.Equal(2.262 * 3.0276503540974917 / Math.Sqrt(10), s.Ci95, 6);
    }

    [Fact]
    public void Confidence_interval_narrows_with_more_samples()
    {
        var rng = new Random(5);
        var few = Enumerable.Range(0, 10).Select(_ => rng.NextDouble()).ToArray();
        var many = Enumerable.Range(0, 10_000).Select(_ => rng.NextDouble()).ToArray();
        Assert.True(Statistics.Summarize(many).Ci95 < Statistics.Summarize(few).Ci95 / 10);
    }

    [Fact]
    public void Empty_and_single_samples_do_not_divide_by_zero()
    {
        Assert.Equal(0, Statistics.Summarize([]).Count);
        var one = Statistics.Summarize([4.0]);
        Assert.Equal(4.0, one.P99);
        Assert.Equal(0, one.StdDev);
        Assert.Equal(0, one.Ci95);
    }

    [Fact]
    public void Percentile_outside_0_to_100_is_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Statistics.PercentileOfSorted([1.0], 101));
    }

    [Fact]
    public void Three_windows_within_tolerance_are_stable()
    {
        Assert.True(Statistics.IsStable([100, 104, 97], 0.1));
    }

    [Fact]
    public void A_window_beyond_tolerance_is_unstable()
    {
        Assert.False(Statistics.IsStable([100, 125, 100], 0.1));
    }

    [Fact]
    public void Only_the_last_three_windows_count()
    {
        Assert.True(Statistics.IsStable([10, 500, 100, 101, 99], 0.05));
        Assert.False(Statistics.IsStable([100, 101, 99, 500], 0.05));
    }

    [Fact]
    public void Fewer_than_three_windows_are_never_stable()
    {
        Assert.False(Statistics.IsStable([100, 100], 0.5));
    }

    [Fact]
    public void Tolerance_is_relative_to_the_mean()
    {
        // Mean 100; 108 is 8% off: stable at 10%, not at 5%.
        Assert.True(Statistics.IsStable([92, 100, 108], 0.1));
        Assert.False(Statistics.IsStable([92, 100, 108], 0.05));
    }

    [Fact]
    public void Spread_is_range_over_mean()
    {
        Assert.Equal(0.16, Statistics.Spread([92, 100, 108]), 9);
    }
}
