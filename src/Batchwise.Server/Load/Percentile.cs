namespace Batchwise.Server.Load;

/// <summary>
/// Percentiles of raw samples (linear interpolation between closest ranks, as numpy's default). A minimal stand-in
/// until the benchmarking statistics land in the core library; the load generator's only use.
/// </summary>
internal static class Percentile
{
    /// <summary>The <paramref name="p"/>-th percentile (0-100) of samples sorted ascending; NaN when empty.</summary>
    public static double OfSorted(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        var rank = p / 100.0 * (sorted.Count - 1);
        var lo = (int)Math.Floor(rank);
        var hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + ((rank - lo) * (sorted[hi] - sorted[lo]));
    }
}
