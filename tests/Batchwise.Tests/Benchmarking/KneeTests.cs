using Batchwise.Benchmarking;

namespace Batchwise.Tests.Benchmarking;

public sealed class KneeTests
{
    private static (int, double)[] Curve(params double[] throughputs) => throughputs.Select((t, i) => (1 << i, t)).ToArray();

    [Fact]
    public void Knee_is_first_batch_within_90_percent_of_the_best()
    {
        // 1..64; best 960 at b=64; 90% = 864; b=16 (900) is the first above it, b=8 (600) is not.
        var knee = Knee.Find(Curve(100, 190, 350, 600, 900, 950, 960))!;
        Assert.Equal(16, knee.KneeBatchSize);
        Assert.Equal(64, knee.BestBatchSize);
        Assert.Equal(9.0, knee.SpeedupAtKnee, 9);
        Assert.Equal((960.0 / 900) - 1, knee.GainBeyondKnee, 9);
        Assert.Equal("batching pays up to b=16 (9.0x over b=1); beyond it +7% (best b=64)", knee.Verdict);
    }

    [Fact]
    public void Each_doubling_has_its_gain()
    {
        var knee = Knee.Find(Curve(100, 150, 150, 120))!;
        Assert.Equal([(1, 2, 0.5), (2, 4, 0.0), (4, 8, -0.2)], knee.Steps.Select(s => (s.FromBatchSize, s.ToBatchSize, Math.Round(s.Gain, 9))));
    }

    [Fact]
    public void Flat_curve_says_batching_does_not_pay()
    {
        var knee = Knee.Find(Curve(1000, 980, 1010, 990))!;
        Assert.Equal(1, knee.KneeBatchSize);
        Assert.StartsWith("batching barely pays here: b=4 is only +1% over b=1", knee.Verdict, StringComparison.Ordinal);
    }

    [Fact]
    public void A_gain_that_rounds_to_zero_reads_0_percent_without_a_sign()
    {
        var knee = Knee.Find(Curve(1000, 1001))!;

        Assert.StartsWith("batching barely pays here: b=2 is only 0% over b=1", knee.Verdict, StringComparison.Ordinal);
    }

    [Fact]
    public void Falling_curve_names_b1_as_fastest()
    {
        var knee = Knee.Find(Curve(1000, 700, 500))!;
        Assert.Equal(1, knee.KneeBatchSize);
        Assert.Equal("batching does not pay here: b=1 is the fastest per sample; b=4 falls to 50% of the best", knee.Verdict);
    }

    [Fact]
    public void Curve_still_rising_at_the_end_says_so()
    {
        var knee = Knee.Find(Curve(10, 20, 40, 80))!;
        Assert.Equal(8, knee.KneeBatchSize);
        Assert.Equal("batching pays up to b=8 (8.0x over b=1); still rising at the largest batch measured", knee.Verdict);
    }

    [Fact]
    public void Peak_then_drop_reports_the_drop()
    {
        var knee = Knee.Find(Curve(100, 300, 500, 250))!;
        Assert.Equal(4, knee.KneeBatchSize);
        Assert.Contains("b=8 falls to 50% of the best", knee.Verdict, StringComparison.Ordinal);
    }

    [Fact]
    public void Unordered_input_and_other_baselines_work()
    {
        var knee = Knee.Find([(32, 900.0), (8, 400.0), (16, 880.0)], concurrency: 2)!;
        Assert.Equal(16, knee.KneeBatchSize);
        Assert.Equal(8, knee.BaselineBatchSize);
        Assert.Equal(2, knee.Concurrency);
        Assert.Equal(2.2, knee.SpeedupAtKnee, 9);
    }

    [Fact]
    public void Single_point_has_nothing_to_compare()
    {
        var knee = Knee.Find([(1, 50.0)])!;
        Assert.Contains("nothing to compare", knee.Verdict, StringComparison.Ordinal);
        Assert.Empty(knee.Steps);
    }

    [Fact]
    public void No_points_no_knee()
    {
        Assert.Null(Knee.Find([]));
    }

    [Fact]
    public void Threshold_is_configurable()
    {
        var curve = Curve(100, 190, 350, 600, 900, 950, 960);
        Assert.Equal(32, Knee.Find(curve, threshold: 0.98)!.KneeBatchSize);
    }
}
