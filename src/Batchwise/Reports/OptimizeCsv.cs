using Batchwise.Transforms;

namespace Batchwise.Reports;

/// <summary>`batchwise optimize --csv`: one row per benched batch size, before beside after (docs/report-schemas.md).</summary>
public static class OptimizeCsv
{
    /// <summary>The columns, in order.</summary>
    public static readonly IReadOnlyList<string> Columns =
    [
        "model", "output", "transforms", "passed", "batch_size", "before_median_ms", "before_samples_per_s", "before_error",
        "after_median_ms", "after_samples_per_s", "after_error", "speedup",
    ];

    /// <summary>The CSV text of a pipeline run whose result was written to <paramref name="output"/>.</summary>
    public static string ToCsv(OptimizationReport report, string output)
    {
        ArgumentNullException.ThrowIfNull(report);
        return Csv.Write(Columns, report.SpeedAfter.Select((after, i) =>
        {
            var before = i < report.SpeedBefore.Count ? report.SpeedBefore[i] : null;
            var speedup = before is { Error: null, MedianMs: > 0 } && after is { Error: null, MedianMs: > 0 } ? before.MedianMs / after.MedianMs : (double?)null;
            return (IReadOnlyList<object?>)
            [
                report.Model, output, string.Join(' ', report.Steps.Select(s => s.Name)), report.Passed, after.BatchSize,
                before?.MedianMs, before is { Error: null } ? before.Throughput : null, before?.Error,
                after.MedianMs, after.Error is null ? after.Throughput : null, after.Error, speedup,
            ];
        }));
    }
}
