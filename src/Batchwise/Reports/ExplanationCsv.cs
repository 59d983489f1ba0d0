using Batchwise.Analysis;

namespace Batchwise.Reports;

/// <summary>An explanation's curve as CSV: one row per batch size, predicted beside measured (docs/report-schemas.md).</summary>
public static class ExplanationCsv
{
    /// <summary>The columns, in order.</summary>
    public static readonly IReadOnlyList<string> Columns =
    [
        "model", "device", "precision", "batch_size", "predicted_samples_per_s", "measured_samples_per_s", "error",
        "predicted_latency_s", "measured_latency_median_s", "compute_share", "memory_share", "overhead_share",
    ];

    /// <summary>The CSV text.</summary>
    public static string ToCsv(Explanation explanation)
    {
        ArgumentNullException.ThrowIfNull(explanation);
        return Csv.Write(Columns, explanation.Predicted.Select(p =>
        {
            var m = explanation.Measured.FirstOrDefault(x => x.BatchSize == p.BatchSize);
            return (IReadOnlyList<object?>)
            [
                explanation.ModelName, explanation.Ceilings.Device, explanation.Ceilings.Precision, p.BatchSize,
                p.Throughput, m?.Throughput, m is null ? null : (p.Throughput - m.Throughput) / m.Throughput,
                p.Seconds, m?.LatencyMedianSeconds,
                p.SecondsBoundBy(Bound.Compute) / p.Seconds, p.SecondsBoundBy(Bound.Memory) / p.Seconds, p.SecondsBoundBy(Bound.Launch) / p.Seconds,
            ];
        }));
    }
}
