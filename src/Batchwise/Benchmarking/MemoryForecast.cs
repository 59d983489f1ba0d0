namespace Batchwise.Benchmarking;

/// <summary>
/// Predicts the peak working set of the next batch size from the last two measured ones (linear in the batch),
/// so a sweep stops before the machine runs out of memory rather than being killed by it.
/// </summary>
public static class MemoryForecast
{
    /// <summary>Share of the available memory a point may be predicted to use before the sweep stops.</summary>
    public const double Headroom = 0.9;

    /// <summary>Predicted peak working set at <paramref name="nextBatchSize"/>, or null with fewer than two points.</summary>
    public static long? Predict(IReadOnlyList<(int BatchSize, long PeakBytes)> measured, int nextBatchSize)
    {
        ArgumentNullException.ThrowIfNull(measured);
        var points = measured.GroupBy(p => p.BatchSize).Select(g => (BatchSize: g.Key, PeakBytes: g.Max(p => p.PeakBytes))).OrderBy(p => p.BatchSize).ToList();
        if (points.Count < 2)
        {
            return null;
        }

        var (a, b) = (points[^2], points[^1]);
        var perSample = Math.Max(0.0, (double)(b.PeakBytes - a.PeakBytes) / (b.BatchSize - a.BatchSize));
        return (long)(b.PeakBytes + (perSample * (nextBatchSize - b.BatchSize)));
    }

    /// <summary>Memory this process may use (the machine's, or its container's limit).</summary>
    public static long AvailableBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
}
