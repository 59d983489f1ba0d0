using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Batchwise.Server;

/// <summary>A count and total nanoseconds, as the statistics extension writes them.</summary>
internal sealed record DurationJson(long Count, long Ns)
{
    public static DurationJson Of(DurationTotal d) => new(d.Count, d.Nanoseconds);
}

/// <summary>Triton's $inference_stats.</summary>
internal sealed record InferenceStatsJson(
    DurationJson Success,
    DurationJson Fail,
    DurationJson Queue,
    DurationJson ComputeInput,
    DurationJson ComputeInfer,
    DurationJson ComputeOutput,
    DurationJson CacheHit,
    DurationJson CacheMiss);

/// <summary>Triton's $batch_stats.</summary>
internal sealed record BatchStatsJson(int BatchSize, DurationJson ComputeInput, DurationJson ComputeInfer, DurationJson ComputeOutput);

/// <summary>Triton's $memory_usage.</summary>
internal sealed record MemoryUsageJson(string Type, long Id, long ByteSize);

/// <summary>Triton's $model_stat.</summary>
internal sealed record ModelStatJson(
    string Name,
    string Version,
    long LastInference,
    long InferenceCount,
    long ExecutionCount,
    InferenceStatsJson InferenceStats,
    IReadOnlyDictionary<string, InferenceStatsJson> ResponseStats,
    IReadOnlyList<BatchStatsJson> BatchStats,
    IReadOnlyList<MemoryUsageJson> MemoryUsage)
{
    public static ModelStatJson Of(ModelStatisticsSnapshot s)
    {
        var none = new DurationJson(0, 0);
        return new(
            s.Name,
            s.Version,
            s.LastInferenceMs,
            s.InferenceCount,
            s.ExecutionCount,
            new InferenceStatsJson(DurationJson.Of(s.Success), DurationJson.Of(s.Fail), DurationJson.Of(s.Queue), DurationJson.Of(s.ComputeInput), DurationJson.Of(s.ComputeInfer), DurationJson.Of(s.ComputeOutput), none, none),
            new Dictionary<string, InferenceStatsJson>(),
            s.BatchStats.Select(b => new BatchStatsJson(b.BatchSize, DurationJson.Of(b.ComputeInput), DurationJson.Of(b.ComputeInfer), DurationJson.Of(b.ComputeOutput))).ToList(),
            []);
    }
}

/// <summary>Triton's $stats_model_response.</summary>
internal sealed record StatsResponseJson(IReadOnlyList<ModelStatJson> ModelStats);

/// <summary>Triton's $repository_index_request.</summary>
internal sealed record RepositoryIndexRequestJson(bool Ready);

/// <summary>Triton's $log_setting_response.</summary>
internal sealed record LogSettingsJson(string LogFile, bool LogInfo, bool LogWarning, bool LogError, int LogVerboseLevel, string LogFormat)
{
    public static LogSettingsJson Of(LogSettings.Snapshot s) => new(string.Empty, s.Info, s.Warning, s.Error, s.VerboseLevel, s.Format);
}

/// <summary>The protocol payloads this server writes and reads as records (snake_case, source-generated).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(StatsResponseJson))]
[JsonSerializable(typeof(IReadOnlyList<ModelIndexEntry>))]
[JsonSerializable(typeof(RepositoryIndexRequestJson))]
[JsonSerializable(typeof(LogSettingsJson))]
internal sealed partial class ProtocolJson : JsonSerializerContext
{
    /// <summary>The context with names quoted as written (error texts quote names with ').</summary>
    public static ProtocolJson Relaxed { get; } = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
