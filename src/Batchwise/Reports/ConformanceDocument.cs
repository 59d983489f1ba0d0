using System.Text.Json.Serialization;
using Batchwise.Comparison;
using Batchwise.Conformance;
using Batchwise.Engines;

namespace Batchwise.Reports;

/// <summary>`batchwise conformance --json`: schema batchwise.conformance (docs/report-schemas.md).</summary>
/// <param name="Engine">What ran.</param>
/// <param name="Directory">The folder of node tests.</param>
/// <param name="Tolerance">The tolerance every output was held to.</param>
/// <param name="Ops">The --ops selection, or null.</param>
/// <param name="Filter">The --filter pattern, or null.</param>
/// <param name="Total">Counts over every case.</param>
/// <param name="Operators">Counts per operator (a case with several operators counts under each).</param>
/// <param name="Cases">Every case's result.</param>
/// <param name="Date">When it ran.</param>
/// <param name="Host">Where it ran.</param>
public sealed record ConformanceDocument(
    EngineDescription Engine,
    string Directory,
    Tolerance Tolerance,
    IReadOnlyList<string>? Ops,
    string? Filter,
    OperatorSummary Total,
    IReadOnlyList<OperatorSummary> Operators,
    IReadOnlyList<CaseResult> Cases,
    DateTimeOffset Date,
    HostRecord Host)
{
    /// <summary>The schema's name.</summary>
    [JsonPropertyOrder(-2)]
    public string Schema { get; init; } = "batchwise.conformance";

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    [JsonPropertyOrder(-1)]
    public int SchemaVersion { get; init; } = 1;

    /// <summary>The CSV columns: one row per case.</summary>
    public static readonly IReadOnlyList<string> CsvColumns = ["case", "ops", "status", "reason", "max_abs_error", "seconds", "engine", "engine_version"];

    /// <summary>The document built from a run.</summary>
    public static ConformanceDocument From(ConformanceReport report, IReadOnlyCollection<string>? ops, string? filter)
    {
        ArgumentNullException.ThrowIfNull(report);
        return new ConformanceDocument(report.Engine, report.Directory, report.Tolerance, ops?.Order(StringComparer.Ordinal).ToList(), filter, report.Total, report.Operators, report.Cases, DateTimeOffset.UtcNow, HostRecord.Current());
    }

    /// <summary>The document as CSV, one row per case.</summary>
    public string ToCsv() => Csv.Write(CsvColumns, Cases.Select(c => (IReadOnlyList<object?>)
        [c.Name, string.Join(' ', c.Ops), c.Status.ToString().ToLowerInvariant(), c.Reason, c.MaxAbsError, c.Seconds, Engine.Engine, Engine.Version]));
}
