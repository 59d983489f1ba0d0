namespace Batchwise.Benchmarking;

/// <summary>Summary of a set of latency samples (all in the samples' unit).</summary>
/// <param name="Count">Number of samples.</param>
/// <param name="Mean">Arithmetic mean.</param>
/// <param name="StdDev">Sample standard deviation (n - 1).</param>
/// <param name="Min">Smallest sample.</param>
/// <param name="Max">Largest sample.</param>
/// <param name="P50">Median.</param>
/// <param name="P90">90th percentile.</param>
/// <param name="P95">95th percentile.</param>
/// <param name="P99">99th percentile.</param>
/// <param name="Ci95">Half-width of the 95% confidence interval of the mean (Student's t).</param>
public sealed record LatencyPercentiles(int Count, double Mean, [property: System.Text.Json.Serialization.JsonPropertyName("stddev")] double StdDev, double Min, double Max, double P50, double P90, double P95, double P99, double Ci95)
{
    /// <summary>The summary with every value multiplied by <paramref name="factor"/> (e.g. seconds to milliseconds).</summary>
    public LatencyPercentiles Scale(double factor) =>
        new(Count, Mean * factor, StdDev * factor, Min * factor, Max * factor, P50 * factor, P90 * factor, P95 * factor, P99 * factor, Ci95 * factor);
}

/// <summary>The one place statistics are derived from raw samples.</summary>
public static class Statistics
{
    // Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal 1.96.
    private static readonly double[] T975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    /// <summary>Summarises samples; an empty set gives all zeros.</summary>
    public static LatencyPercentiles Summarize(IReadOnlyCollection<double> samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        if (samples.Count == 0)
        {
            return new LatencyPercentiles(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        }

        var sorted = samples.ToArray();
        Array.Sort(sorted);
        var n = sorted.Length;
        var mean = Mean(sorted);
        var sd = StdDev(sorted, mean);
        var ci = n < 2 ? 0 : TQuantile(n - 1) * sd / Math.Sqrt(n);
        return new LatencyPercentiles(
            n, mean, sd, sorted[0], sorted[^1],
            PercentileOfSorted(sorted, 50), PercentileOfSorted(sorted, 90), PercentileOfSorted(sorted, 95), PercentileOfSorted(sorted, 99), ci);
    }

    /// <summary>The p-th percentile (0-100) of ascending samples, interpolating linearly between ranks (numpy's default).</summary>
    public static double PercentileOfSorted(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        if (sorted.Count == 0)
        {
            throw new ArgumentException("No samples", nameof(sorted));
        }

        if (p is < 0 or > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "A percentile lies in 0..100.");
        }

        var rank = p / 100 * (sorted.Count - 1);
        var lo = (int)Math.Floor(rank);
        var hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + ((rank - lo) * (sorted[hi] - sorted[lo]));
    }

    /// <summary>Arithmetic mean.</summary>
    public static double Mean(IReadOnlyCollection<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return values.Count == 0 ? 0 : values.Sum() / values.Count;
    }

    /// <summary>Sample standard deviation (divides by n - 1); zero for fewer than two values.</summary>
    public static double StdDev(IReadOnlyCollection<double> values, double mean)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count < 2)
        {
            return 0;
        }

        var ss = values.Sum(v => (v - mean) * (v - mean));
        return Math.Sqrt(ss / (values.Count - 1));
    }

    /// <summary>Relative spread of values: (max - min) / mean; zero when the mean is zero.</summary>
    public static double Spread(IReadOnlyCollection<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0)
        {
            return 0;
        }

        var mean = Mean(values);
        return mean == 0 ? 0 : (values.Max() - values.Min()) / mean;
    }

    /// <summary>
    /// perf_analyzer's stability rule: the last <paramref name="count"/> window throughputs each lie within
    /// <paramref name="tolerance"/> (a fraction, 0.1 = 10%) of their mean.
    /// </summary>
    public static bool IsStable(IReadOnlyList<double> windowThroughputs, double tolerance, int count = 3)
    {
        ArgumentNullException.ThrowIfNull(windowThroughputs);
        if (windowThroughputs.Count < count)
        {
            return false;
        }

        var last = windowThroughputs.Skip(windowThroughputs.Count - count).ToArray();
        var mean = Mean(last);
        return mean > 0 && last.All(v => Math.Abs(v - mean) <= tolerance * mean);
    }

    private static double TQuantile(int degreesOfFreedom) => degreesOfFreedom <= T975.Length ? T975[degreesOfFreedom - 1] : 1.96;
}
