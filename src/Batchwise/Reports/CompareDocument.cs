using System.Text.Json.Serialization;
using Batchwise.Comparison;
using Batchwise.Engines;

namespace Batchwise.Reports;

/// <summary>`batchwise compare --json`: schema batchwise.compare (docs/report-schemas.md).</summary>
/// <param name="Reference">The reference side.</param>
/// <param name="Candidate">The candidate side.</param>
/// <param name="Seed">Seed of the random inputs.</param>
/// <param name="Inputs">The inputs as given to the reference (name, type, shape).</param>
/// <param name="InputData">Where each input's data came from (random, npy file).</param>
/// <param name="Tolerance">The tolerance every output was held to.</param>
/// <param name="Outputs">One comparison per output.</param>
/// <param name="Notes">Anything the reader should know.</param>
/// <param name="Passed">Whether every output is within tolerance.</param>
/// <param name="Date">When it ran.</param>
/// <param name="Host">Where it ran.</param>
public sealed record CompareDocument(
    CompareSideRecord Reference,
    CompareSideRecord Candidate,
    int Seed,
    IReadOnlyList<string> Inputs,
    IReadOnlyDictionary<string, string> InputData,
    Tolerance Tolerance,
    IReadOnlyList<TensorComparison> Outputs,
    IReadOnlyList<string> Notes,
    bool Passed,
    DateTimeOffset Date,
    HostRecord Host)
{
    /// <summary>The schema's name.</summary>
    [JsonPropertyOrder(-2)]
    public string Schema { get; init; } = "batchwise.compare";

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    [JsonPropertyOrder(-1)]
    public int SchemaVersion { get; init; } = 1;

    /// <summary>The CSV columns: one row per output.</summary>
    public static readonly IReadOnlyList<string> CsvColumns =
    [
        "output", "reference_engine", "candidate_engine", "candidate_precision", "reference_shape", "candidate_shape", "elements",
        "max_abs_error", "max_rel_error", "mean_abs_error", "cosine", "mismatches", "top1", "top5", "passed", "problem",
    ];

    /// <summary>The document as CSV, one row per output.</summary>
    public string ToCsv() => Csv.Write(CsvColumns, Outputs.Select(o => (IReadOnlyList<object?>)
    [
        o.Name, Reference.Engine.Engine, Candidate.Engine.Engine, Candidate.Precision, o.Reference, o.Candidate, o.Elements,
        o.MaxAbsError, o.MaxRelError, o.MeanAbsError, o.Problem is null ? o.Cosine : null, o.Mismatches, o.TopK?.Top1, o.TopK?.Top5, o.Passed, o.Problem,
    ]));
}

/// <summary>One side of a comparison as recorded.</summary>
/// <param name="Model">The model's path or zoo spec.</param>
/// <param name="Engine">What ran it.</param>
/// <param name="Precision">The precision it ran in.</param>
/// <param name="AllowTf32">Whether TF32 was allowed for fp32.</param>
public sealed record CompareSideRecord(string Model, EngineDescription Engine, Precision Precision, bool AllowTf32);
