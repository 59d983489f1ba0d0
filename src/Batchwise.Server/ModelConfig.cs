using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Batching;
using Batchwise.Engines;

namespace Batchwise.Server;

/// <summary>
/// A model's serving settings: the optional <c>config.json</c> beside <c>model.onnx</c> in a repository folder.
/// Names follow Triton's model configuration (max_batch_size, dynamic_batching, instance_count).
/// </summary>
public sealed record ModelConfig
{
    /// <summary>The file name looked for in each model folder.</summary>
    public const string FileName = "config.json";

    /// <summary>Largest batch a request (or a merged batch) may have; null: 32 when the model has a dynamic batch axis, else 0.</summary>
    [JsonPropertyName("max_batch_size")]
    public int? MaxBatchSize { get; init; }

    /// <summary>Dynamic batching settings; absent means every request runs alone.</summary>
    [JsonPropertyName("dynamic_batching")]
    public DynamicBatchingConfig? DynamicBatching { get; init; }

    /// <summary>Executions in flight at once (one engine session each).</summary>
    [JsonPropertyName("instance_count")]
    public int InstanceCount { get; init; } = 1;

    /// <summary>Engine name from the engine registry (ort, cuda).</summary>
    [JsonPropertyName("engine")]
    public string Engine { get; init; } = "ort";

    /// <summary>fp32 or fp16.</summary>
    [JsonPropertyName("precision")]
    public string Precision { get; init; } = "fp32";

    /// <summary>Threads inside one operator per instance (ONNX Runtime); 0 = engine default.</summary>
    [JsonPropertyName("intra_op_threads")]
    public int IntraOpThreads { get; init; }

    /// <summary>Class labels for the classification extension: a file in the model folder, one label per line (default: labels.txt when present).</summary>
    [JsonPropertyName("label_filename")]
    public string? LabelFilename { get; init; }

    /// <summary>The version the model is served as.</summary>
    [JsonPropertyName("version")]
    public string Version { get; init; } = "1";

    /// <summary>Reads a config file, explaining the first problem in it.</summary>
    public static ModelConfig Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (IOException e)
        {
            throw new BatchwiseException($"Cannot read '{path}': {e.Message}", "Check the file's permissions.", e);
        }

        return Parse(text, $"'{path}'");
    }

    /// <summary>Reads a config from JSON text; <paramref name="origin"/> names where it came from in errors.</summary>
    public static ModelConfig Parse(string json, string origin)
    {
        try
        {
            return JsonSerializer.Deserialize<ModelConfig>(json, JsonOptions)
                ?? throw new BatchwiseException($"{origin} is empty", "Write a JSON object, e.g. {\"max_batch_size\": 32}.");
        }
        catch (JsonException e)
        {
            throw new BatchwiseException($"{origin} is not a valid model config: {e.Message}", "Known keys: max_batch_size, dynamic_batching {max_queue_delay_microseconds, preferred_batch_size, priority_levels, default_priority_level, default_timeout_microseconds, max_queue_size}, instance_count, engine, precision, intra_op_threads, label_filename, version.", e);
        }
    }

    /// <summary>Engine options implied by the config.</summary>
    public EngineOptions ToEngineOptions() => new()
    {
        Precision = Precision.ToLowerInvariant() switch
        {
            "fp32" => Engines.Precision.Fp32,
            "fp16" => Engines.Precision.Fp16,
            _ => throw new BatchwiseException($"Unknown precision '{Precision}'", "Use fp32 or fp16."),
        },
        IntraOpThreads = IntraOpThreads,
    };

    /// <summary>The batcher settings for a model whose effective max batch size is <paramref name="maxBatchSize"/>.</summary>
    public BatcherOptions ToBatcherOptions(int maxBatchSize)
    {
        var d = DynamicBatching;
        var options = new BatcherOptions
        {
            // Without dynamic batching each request runs alone (the batcher still queues and feeds instances).
            MaxBatchSize = d is null ? 0 : maxBatchSize,
            MaxQueueDelay = TimeSpan.FromMicroseconds(d?.MaxQueueDelayMicroseconds ?? 0),
            PreferredBatchSizes = d?.PreferredBatchSize ?? [],
            PriorityLevels = Math.Max(1, d?.PriorityLevels ?? 1),
            DefaultPriorityLevel = d?.DefaultPriorityLevel ?? 0,
            DefaultTimeout = d?.DefaultTimeoutMicroseconds is > 0 and var t ? TimeSpan.FromMicroseconds(t) : null,
            MaxQueueSize = d?.MaxQueueSize is > 0 and var q ? q : 1024,
            InstanceCount = InstanceCount,
        };
        options.Validate();
        return options;
    }

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
    };
}

/// <summary>Dynamic batching settings (Triton's dynamic_batching block).</summary>
public sealed record DynamicBatchingConfig
{
    /// <summary>How long the oldest request may wait for others, in microseconds.</summary>
    [JsonPropertyName("max_queue_delay_microseconds")]
    public long MaxQueueDelayMicroseconds { get; init; }

    /// <summary>Batch sizes sent at once when reached.</summary>
    [JsonPropertyName("preferred_batch_size")]
    public int[]? PreferredBatchSize { get; init; }

    /// <summary>Number of priority levels (1 = highest).</summary>
    [JsonPropertyName("priority_levels")]
    public int PriorityLevels { get; init; } = 1;

    /// <summary>The level of requests that name none; 0 = the middle level.</summary>
    [JsonPropertyName("default_priority_level")]
    public int DefaultPriorityLevel { get; init; }

    /// <summary>Queue timeout for requests that name none, in microseconds; 0 = none.</summary>
    [JsonPropertyName("default_timeout_microseconds")]
    public long DefaultTimeoutMicroseconds { get; init; }

    /// <summary>Most requests queued before new ones are rejected; 0 = 1024.</summary>
    [JsonPropertyName("max_queue_size")]
    public int MaxQueueSize { get; init; }
}
