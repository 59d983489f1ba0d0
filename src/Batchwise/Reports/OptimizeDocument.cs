using System.Text.Json.Serialization;
using Batchwise.Engines;
using Batchwise.Transforms;

namespace Batchwise.Reports;

/// <summary>`batchwise optimize --json`: schema batchwise.optimize (docs/report-schemas.md, fields in docs/optimize.md).</summary>
/// <param name="Model">The original model's name.</param>
/// <param name="Output">Where the optimized model was written.</param>
/// <param name="Steps">Each transform applied, in order.</param>
/// <param name="Before">Cost of the original at batch 1.</param>
/// <param name="After">Cost of the result at batch 1.</param>
/// <param name="Agreement">Output agreement with the original.</param>
/// <param name="AgreementError">Why outputs were not compared, or null.</param>
/// <param name="SpeedBefore">The original's bench points.</param>
/// <param name="SpeedAfter">The result's bench points.</param>
/// <param name="Engine">What verified and benched.</param>
/// <param name="Date">When it ran.</param>
public sealed record OptimizeDocument(
    string Model,
    string Output,
    IReadOnlyList<TransformStep> Steps,
    CostSummary? Before,
    CostSummary? After,
    IReadOnlyList<OutputAgreement> Agreement,
    string? AgreementError,
    IReadOnlyList<SpeedPoint> SpeedBefore,
    IReadOnlyList<SpeedPoint> SpeedAfter,
    EngineDescription Engine,
    DateTimeOffset Date)
{
    /// <summary>The schema's name.</summary>
    [JsonPropertyOrder(-2)]
    public string Schema { get; init; } = "batchwise.optimize";

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    [JsonPropertyOrder(-1)]
    public int SchemaVersion { get; init; } = 1;

    /// <summary>The CSV columns: one row per benched batch size, before beside after.</summary>
    public static readonly IReadOnlyList<string> CsvColumns =
    [
        "model", "output", "transforms", "batch_size", "before_median_ms", "before_samples_per_s", "before_error",
        "after_median_ms", "after_samples_per_s", "after_error", "speedup",
    ];

    /// <summary>The document of a pipeline run whose result was written to <paramref name="output"/>.</summary>
    public static OptimizeDocument From(OptimizationReport report, string output)
    {
        ArgumentNullException.ThrowIfNull(report);
        return new OptimizeDocument(report.Model, output, report.Steps, report.Before, report.After, report.Agreement, report.AgreementError, report.SpeedBefore, report.SpeedAfter, report.Engine, report.Date);
    }

    /// <summary>The document as CSV, one row per benched batch size.</summary>
    public string ToCsv() => Csv.Write(CsvColumns, SpeedAfter.Select((after, i) =>
    {
        var before = i < SpeedBefore.Count ? SpeedBefore[i] : null;
        var speedup = before is { Error: null, MedianMs: > 0 } && after is { Error: null, MedianMs: > 0 } ? before.MedianMs / after.MedianMs : (double?)null;
        return (IReadOnlyList<object?>)
        [
            Model, Output, string.Join(' ', Steps.Select(s => s.Name)), after.BatchSize,
            before?.MedianMs, before is { Error: null } ? before.Throughput : null, before?.Error,
            after.MedianMs, after.Error is null ? after.Throughput : null, after.Error, speedup,
        ];
    }));
}
