using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Batchwise.Engines;

namespace Batchwise.Reports;

/// <summary>
/// The one JSON layer of every report: records serialized by System.Text.Json source generation with the snake_case
/// policy, and read back through the same records. Each document carries its schema's name and version
/// (docs/report-schemas.md).
/// </summary>
public static class ReportJson
{
    /// <summary>The options every report is written and read with (also for types outside the generated context).</summary>
    public static JsonSerializerOptions Options { get; } = new(ReportJsonContext.Default.Options);

    /// <summary>A record as indented snake_case JSON, ending in a newline.</summary>
    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, TypeInfo<T>()) + "\n";

    /// <summary>
    /// Reads a record back; a document that does not fit is a one-line error naming the file, what it should have been
    /// (<paramref name="what"/>, e.g. "bench result") and the problem.
    /// </summary>
    public static T Deserialize<T>(string json, string source, string what, string hint)
    {
        try
        {
            return JsonSerializer.Deserialize(json, TypeInfo<T>()) ?? throw new BatchwiseException($"'{source}' holds null, not a {what}", hint);
        }
        catch (JsonException e)
        {
            throw new BatchwiseException($"'{source}' is not a readable {what}: {e.Message}", hint, e);
        }
    }

    private static JsonTypeInfo<T> TypeInfo<T>() =>
        ReportJsonContext.Default.GetTypeInfo(typeof(T)) as JsonTypeInfo<T>
        ?? throw new InvalidOperationException($"{typeof(T).Name} is not in {nameof(ReportJsonContext)}: add [JsonSerializable(typeof({typeof(T).Name}))]");
}

/// <summary>What the host that made a report was.</summary>
/// <param name="MachineName">Host name.</param>
/// <param name="CpuName">CPU model.</param>
/// <param name="LogicalCores">Logical cores.</param>
/// <param name="OperatingSystem">Operating system.</param>
/// <param name="Runtime">.NET runtime.</param>
public sealed record HostRecord(string MachineName, string CpuName, int LogicalCores, string OperatingSystem, string Runtime)
{
    /// <summary>This host.</summary>
    public static HostRecord Current() => new(HostInfo.MachineName, HostInfo.CpuName, HostInfo.LogicalCores, HostInfo.OperatingSystem, HostInfo.Runtime);
}

/// <summary>Enums as snake_case strings in every report (fp16, past_tolerance).</summary>
public sealed class SnakeCaseEnumConverter<TEnum>() : JsonStringEnumConverter<TEnum>(JsonNamingPolicy.SnakeCaseLower)
    where TEnum : struct, Enum;

/// <summary>The generated serializers of every report record.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    Converters = [typeof(SnakeCaseEnumConverter<Precision>), typeof(SnakeCaseEnumConverter<Conformance.CaseStatus>), typeof(SnakeCaseEnumConverter<Benchmarking.StopReason>)])]
[JsonSerializable(typeof(BenchDocument))]
[JsonSerializable(typeof(CompareDocument))]
[JsonSerializable(typeof(Analysis.ExplainDocument))]
[JsonSerializable(typeof(ConformanceDocument))]
[JsonSerializable(typeof(Transforms.OptimizationReport))]
[JsonSerializable(typeof(LoadReport))]
[JsonSerializable(typeof(DevicesDocument))]
internal sealed partial class ReportJsonContext : JsonSerializerContext;
