using Batchwise.Benchmarking;

namespace Batchwise.Reports;

/// <summary>A sweep as JSON in the documented, versioned schema (docs/bench-schema.md): the <see cref="BenchDocument"/> record.</summary>
public static class BenchmarkJson
{
    /// <summary>The schema's name.</summary>
    public const string SchemaName = BenchDocument.SchemaName;

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    public const int SchemaVersion = BenchDocument.CurrentVersion;

    /// <summary>Writes the JSON document to a file.</summary>
    public static void Write(BenchmarkResult result, string path) => ReportFile.WriteText(path, ToJson(result));

    /// <summary>The JSON document as a string.</summary>
    public static string ToJson(BenchmarkResult result) => ReportJson.Serialize(BenchDocument.From(result));
}
