using System.Globalization;

namespace Batchwise.Benchmarking;

/// <summary>The throughput gain from one measured batch size to the next.</summary>
/// <param name="FromBatchSize">The smaller batch size.</param>
/// <param name="ToBatchSize">The next measured batch size.</param>
/// <param name="Gain">Throughput ratio minus one (0.25 = +25%).</param>
public sealed record BatchStep(int FromBatchSize, int ToBatchSize, double Gain);

/// <summary>Where batching stops paying on one throughput curve.</summary>
/// <param name="Concurrency">The concurrency the curve was measured at.</param>
/// <param name="KneeBatchSize">The smallest batch size within the threshold (90%) of the best throughput.</param>
/// <param name="BestBatchSize">The batch size with the best throughput.</param>
/// <param name="BestThroughput">The best throughput, samples/s.</param>
/// <param name="BaselineBatchSize">The smallest batch size measured (usually 1).</param>
/// <param name="SpeedupAtKnee">Throughput at the knee over throughput at the baseline.</param>
/// <param name="GainBeyondKnee">Best throughput over knee throughput, minus one.</param>
/// <param name="Steps">The gain of each step (each doubling, for powers of two).</param>
/// <param name="Verdict">One line in plain words.</param>
public sealed record KneeResult(
    int Concurrency, int KneeBatchSize, int BestBatchSize, double BestThroughput, int BaselineBatchSize,
    double SpeedupAtKnee, double GainBeyondKnee, IReadOnlyList<BatchStep> Steps, string Verdict);

/// <summary>Finds the knee of a throughput-versus-batch-size curve.</summary>
public static class Knee
{
    /// <summary>Share of the best throughput that counts as "as good" (0.9 = within 10%).</summary>
    public const double DefaultThreshold = 0.9;

    /// <summary>Finds the knee of (batch size, samples/s) points; null when there are none.</summary>
    public static KneeResult? Find(IEnumerable<(int BatchSize, double Throughput)> curve, int concurrency = 1, double threshold = DefaultThreshold)
    {
        ArgumentNullException.ThrowIfNull(curve);
        var points = curve.Where(p => p.Throughput > 0).OrderBy(p => p.BatchSize).ToList();
        if (points.Count == 0)
        {
            return null;
        }

        var best = points.MaxBy(p => p.Throughput);
        var knee = points.First(p => p.Throughput >= threshold * best.Throughput);
        var baseline = points[0];
        var steps = points.Zip(points.Skip(1), (a, b) => new BatchStep(a.BatchSize, b.BatchSize, (b.Throughput / a.Throughput) - 1)).ToList();
        var speedup = knee.Throughput / baseline.Throughput;
        var beyond = (best.Throughput / knee.Throughput) - 1;
        return new KneeResult(concurrency, knee.BatchSize, best.BatchSize, best.Throughput, baseline.BatchSize, speedup, beyond, steps,
            Verdict(points, knee, best, baseline, speedup, beyond));
    }

    private static string Verdict(
        List<(int BatchSize, double Throughput)> points, (int BatchSize, double Throughput) knee, (int BatchSize, double Throughput) best,
        (int BatchSize, double Throughput) baseline, double speedup, double beyond)
    {
        var c = CultureInfo.InvariantCulture;
        if (points.Count == 1)
        {
            return string.Create(c, $"only b={baseline.BatchSize} was measured ({baseline.Throughput:#,0.###} samples/s); nothing to compare");
        }

        var last = points[^1];
        var drop = best.BatchSize != last.BatchSize ? string.Create(c, $"; b={last.BatchSize} falls to {last.Throughput / best.Throughput * 100:0}% of the best") : string.Empty;
        if (knee.BatchSize == baseline.BatchSize)
        {
            return best.BatchSize == baseline.BatchSize
                ? string.Create(c, $"batching does not pay here: b={baseline.BatchSize} is the fastest per sample{drop}")
                : string.Create(c, $"batching barely pays here: b={best.BatchSize} is only {(best.Throughput / baseline.Throughput) - 1:+0%;-0%;0%} over b={baseline.BatchSize}{drop}");
        }

        var tail = best.BatchSize == knee.BatchSize
            ? (knee.BatchSize == last.BatchSize ? "; still rising at the largest batch measured" : string.Empty)
            : string.Create(c, $"; beyond it {beyond:+0%;-0%;0%} (best b={best.BatchSize})");
        return string.Create(c, $"batching pays up to b={knee.BatchSize} ({speedup:0.0}x over b={baseline.BatchSize}){tail}{drop}");
    }
}
