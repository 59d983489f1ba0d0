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

    /// <summary>Model instances (one engine session each), each with up to <see cref="PipelineDepth"/> batches in flight.</summary>
    [JsonPropertyName("instance_count")]
    public int InstanceCount { get; init; } = 1;

    /// <summary>
    /// Batches one instance may have in flight at once (1..4): above 1, an engine that queues work on a stream (cuda)
    /// stages and enqueues the next batch on the instance's stream while the last one runs; other engines run them side
    /// by side on the instance's session. Unset: <see cref="DefaultPipelineDepth"/>.
    /// </summary>
    [JsonPropertyName("pipeline_depth")]
    public int? PipelineDepth { get; init; }

    /// <summary>
    /// The depth an unset pipeline_depth means: 2 on the cuda engine (served ResNet-50 fp16 on an H200, session 12: +13%
    /// infer/s with CUDA shared memory, +8% with system shared memory against depth 1; depth 3 no better), 1 elsewhere
    /// (ONNX Runtime on the host's cores gains nothing from a second run per instance: its threads are the instance's).
    /// </summary>
    public int DefaultPipelineDepth => string.Equals(Engine, "cuda", StringComparison.OrdinalIgnoreCase) ? 2 : 1;

    /// <summary>The depth in effect: <see cref="PipelineDepth"/> or <see cref="DefaultPipelineDepth"/>.</summary>
    [JsonIgnore]
    public int EffectivePipelineDepth => PipelineDepth ?? DefaultPipelineDepth;

    /// <summary>Engine name from the engine registry (ort, cuda).</summary>
    [JsonPropertyName("engine")]
    public string Engine { get; init; } = "ort";

    /// <summary>fp32, fp16 or int8 (a float model quantized as it loads; a QDQ model run with its own scales).</summary>
    [JsonPropertyName("precision")]
    public string Precision { get; init; } = "fp32";

    /// <summary>
    /// For precision int8: the calibration data, random:N or a folder of .npy samples (relative to the model folder);
    /// null: as the command line says (random:8 by default).
    /// </summary>
    [JsonPropertyName("calibration")]
    public string? Calibration { get; init; }

    /// <summary>For precision int8: minmax, percentile or entropy; null: as the command line says (minmax by default).</summary>
    [JsonPropertyName("calibration_method")]
    public string? CalibrationMethod { get; init; }

    /// <summary>For precision int8: asymmetric or symmetric activations; null: as the command line says (asymmetric by default).</summary>
    [JsonPropertyName("int8_activations")]
    public string? Int8Activations { get; init; }

    /// <summary>
    /// Threads inside one operator per instance (ONNX Runtime); 0 = the served default: the host's cores shared out
    /// among the instances (at least 1 each), so that instances x threads does not exceed the cores.
    /// </summary>
    [JsonPropertyName("intra_op_threads")]
    public int IntraOpThreads { get; init; }

    /// <summary>
    /// Whether ONNX Runtime's workers busy-wait for work (ONNX Runtime's own default outside a server). Null or false
    /// when served: they block, leaving the cores to the network stack and the other instances.
    /// </summary>
    [JsonPropertyName("intra_op_spinning")]
    public bool? IntraOpSpinning { get; init; }

    /// <summary>Class labels for the classification extension: a file in the model folder, one label per line (default: labels.txt when present).</summary>
    [JsonPropertyName("label_filename")]
    public string? LabelFilename { get; init; }

    /// <summary>Engine options from the command line for a single model (`serve MODEL --tf32`); the keys above win where both say.</summary>
    [JsonIgnore]
    public EngineOptions? CommandLineEngineOptions { get; init; }

    /// <summary>
    /// Batch sizes that get a plan of their own on an engine that builds plans (cuda); a merged batch in between runs
    /// padded to the next. Null: powers of two up to max_batch_size for such engines. Every profile's plan is built
    /// before the model reports ready.
    /// </summary>
    [JsonPropertyName("batch_profiles")]
    public int[]? BatchProfiles { get; init; }

    /// <summary>
    /// Ranges of other dynamic dimensions on an engine that builds plans (cuda), as <see cref="ShapeProfile.Syntax"/>:
    /// every shape of the grid gets its plan before the model reports ready; a request off the grid is refused.
    /// </summary>
    [JsonPropertyName("shape_profiles")]
    public string[]? ShapeProfiles { get; init; }

    /// <summary>
    /// With batch profiles on an engine that builds plans (cuda): a merged batch that runs padded also gets its own plan,
    /// built in the background and used once ready; no request waits for it. Null: as the command line says (--exact-plans).
    /// </summary>
    [JsonPropertyName("exact_plans")]
    public bool? ExactPlans { get; init; }

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
            var config = JsonSerializer.Deserialize<ModelConfig>(json, JsonOptions)
                ?? throw new BatchwiseException($"{origin} is empty", "Write a JSON object, e.g. {\"max_batch_size\": 32}.");
            config.Validate(origin);
            return config;
        }
        catch (JsonException e)
        {
            throw new BatchwiseException($"{origin} is not a valid model config: {e.Message}", "Known keys: max_batch_size, dynamic_batching {max_queue_delay_microseconds, preferred_batch_size, priority_levels, default_priority_level, default_timeout_microseconds, max_queue_size}, instance_count, pipeline_depth, engine, precision, calibration, calibration_method, int8_activations, intra_op_threads, intra_op_spinning, batch_profiles, shape_profiles, label_filename, version.", e);
        }
    }

    /// <summary>Largest max_batch_size accepted.</summary>
    public const int MaxBatchSizeLimit = 65536;

    /// <summary>Most instances of one model.</summary>
    public const int InstanceCountLimit = 256;

    /// <summary>Most batches one instance may have in flight.</summary>
    public const int PipelineDepthLimit = 4;

    /// <summary>
    /// Checks every field against its range and throws a <see cref="BatchwiseException"/> naming the first one out
    /// of range, its value and the range; <paramref name="source"/> says where the config came from.
    /// </summary>
    public void Validate(string source)
    {
        Range(source, "max_batch_size", MaxBatchSize ?? 0, 0, MaxBatchSizeLimit, "0: no batch axis");
        Range(source, "instance_count", InstanceCount, 1, InstanceCountLimit, "one engine session each");
        Range(source, "pipeline_depth", EffectivePipelineDepth, 1, PipelineDepthLimit, "batches in flight per instance");
        Range(source, "intra_op_threads", IntraOpThreads, 0, 1024, "0: the cores shared out among the instances");
        if (string.IsNullOrWhiteSpace(Engine))
        {
            throw new BatchwiseException($"{source}: engine is empty", "Use ort (ONNX Runtime, the default) or cuda.");
        }

        if (Precision?.ToLowerInvariant() is not ("fp32" or "fp16" or "int8"))
        {
            throw new BatchwiseException($"{source}: precision '{Precision}' is not fp32, fp16 or int8", "Use fp32 (default), fp16, or int8 (quantized as it loads, calibrated on random:8 unless its \"calibration\" key or `serve --calibration DIR` says otherwise).");
        }

        if (!string.Equals(Precision, "int8", StringComparison.OrdinalIgnoreCase)
            && new[] { ("calibration", Calibration), ("calibration_method", CalibrationMethod), ("int8_activations", Int8Activations) }.FirstOrDefault(p => p.Item2 is not null) is ({ } key, not null))
        {
            throw new BatchwiseException($"{source}: {key} applies to precision int8 only", "Set \"precision\": \"int8\", or drop it.");
        }

        try
        {
            if (CalibrationMethod is not null)
            {
                _ = Transforms.Int8Calibration.ParseMethod(CalibrationMethod);
            }

            if (Int8Activations is not null)
            {
                _ = Transforms.Int8Calibration.ParseSymmetric(Int8Activations);
            }
        }
        catch (BatchwiseException e)
        {
            throw new BatchwiseException($"{source}: {e.Message}", e.Hint, e);
        }

        if (string.IsNullOrEmpty(Version) || Version.Length > 64 || !Version.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
        {
            throw new BatchwiseException($"{source}: version '{Version}' is not 1 to 64 letters, digits, '.', '_' or '-'", "Use a version such as \"1\"; clients put it in URLs.");
        }

        if (DynamicBatching is { } d)
        {
            Range(source, "dynamic_batching.max_queue_delay_microseconds", d.MaxQueueDelayMicroseconds, 0, 60_000_000, "at most 60 s");
            Range(source, "dynamic_batching.priority_levels", d.PriorityLevels, 0, 1000, "0 or 1: one level");
            Range(source, "dynamic_batching.default_priority_level", d.DefaultPriorityLevel, 0, Math.Max(1, d.PriorityLevels), "0: the middle level");
            Range(source, "dynamic_batching.default_timeout_microseconds", d.DefaultTimeoutMicroseconds, 0, RequestValidator.MaxTimeoutMicroseconds, "0: none; at most 24 h");
            Range(source, "dynamic_batching.max_queue_size", d.MaxQueueSize, 0, 1_000_000, "0: 1024");
            if (d.PreferredBatchSize is { } preferred)
            {
                if (preferred.Length > 64)
                {
                    throw new BatchwiseException($"{source}: dynamic_batching.preferred_batch_size lists {preferred.Length} sizes", "List at most 64 sizes.");
                }

                var max = MaxBatchSize is > 0 and var m ? m : MaxBatchSizeLimit;
                foreach (var p in preferred)
                {
                    Range(source, "dynamic_batching.preferred_batch_size", p, 1, max, "each at most max_batch_size");
                }
            }
        }
    }

    private static void Range(string source, string key, long value, long min, long max, string note)
    {
        if (value < min || value > max)
        {
            throw new BatchwiseException($"{source}: {key} is {value}, outside {min}..{max} ({note})", $"Set {key} to a value from {min} to {max}.");
        }
    }

    /// <summary>
    /// Engine options implied by the config, for a model whose effective max batch size is <paramref name="maxBatchSize"/>;
    /// a calibration folder is relative to the model's <paramref name="folder"/>.
    /// </summary>
    public EngineOptions ToEngineOptions(int maxBatchSize = 0, string? folder = null) => (CommandLineEngineOptions ?? new EngineOptions()) with
    {
        Calibration = CalibrationFor(CommandLineEngineOptions?.Calibration ?? Transforms.Int8Calibration.Default, folder),
        BatchProfiles = BatchProfilesFor(maxBatchSize),
        ShapeProfiles = [.. (ShapeProfiles ?? []).Select(ShapeProfile.Parse)],
        ExactPlans = ExactPlans ?? CommandLineEngineOptions?.ExactPlans ?? false,
        Precision = Precision.ToLowerInvariant() switch
        {
            "fp32" => Engines.Precision.Fp32,
            "fp16" => Engines.Precision.Fp16,
            "int8" => Engines.Precision.Int8,
            _ => throw new BatchwiseException($"Unknown precision '{Precision}'", "Use fp32, fp16 or int8."),
        },
        IntraOpThreads = IntraOpThreads,
        IntraOpSpinning = IntraOpSpinning ?? false,
        PipelineDepth = EffectivePipelineDepth,
    };

    /// <summary>The int8 calibration: the config's keys over <paramref name="given"/> (the command line's, or the default).</summary>
    private Transforms.Int8Calibration CalibrationFor(Transforms.Int8Calibration given, string? folder)
    {
        var data = Calibration is null ? given.Data
            : Calibration.StartsWith("random:", StringComparison.OrdinalIgnoreCase) || folder is null || Path.IsPathRooted(Calibration) ? Calibration
            : Path.Combine(folder, Calibration);
        return new Transforms.Int8Calibration(
            data,
            CalibrationMethod is null ? given.Method : Transforms.Int8Calibration.ParseMethod(CalibrationMethod),
            Int8Activations is null ? given.Symmetric : Transforms.Int8Calibration.ParseSymmetric(Int8Activations));
    }

    /// <summary>
    /// The intra-op threads an instance of a served model runs with: intra_op_threads as set, or for 0 on an engine that
    /// runs operators on the host's cores (ort) the cores shared out among the instances, at least 1 each (ONNX Runtime's
    /// own 0 would give every instance a thread per core: N instances x all cores, fighting the network stack).
    /// </summary>
    public static int ServedIntraOpThreads(string engine, int configured, int instances, int cores) =>
        configured > 0 || !string.Equals(engine, "ort", StringComparison.OrdinalIgnoreCase) ? configured : Math.Max(1, cores / Math.Max(1, instances));

    /// <summary>
    /// The batch profiles in force: as configured (each within 1..max_batch_size, the largest being max_batch_size so every
    /// merged batch has a plan), else powers of two up to max_batch_size (and it) for engines that build plans, else none.
    /// </summary>
    public int[] BatchProfilesFor(int maxBatchSize)
    {
        if (BatchProfiles is { } given)
        {
            if (given.Length > 0 && maxBatchSize <= 0)
            {
                throw new BatchwiseException("batch_profiles needs batching: the model's max_batch_size is 0", "Remove batch_profiles, or set max_batch_size.");
            }

            var bad = given.FirstOrDefault(b => b < 1 || b > maxBatchSize);
            if (given.Length > 0 && bad != 0)
            {
                throw new BatchwiseException($"batch_profiles holds {bad}, outside 1..{maxBatchSize} (max_batch_size)", "List batch sizes from 1 up to max_batch_size, e.g. [1, 8, 32, 64].");
            }

            if (given.Length > 0 && given.Max() != maxBatchSize)
            {
                throw new BatchwiseException($"batch_profiles ends at {given.Max()}, below max_batch_size {maxBatchSize}: larger merged batches would have no plan", $"Add {maxBatchSize} to batch_profiles, or lower max_batch_size.");
            }

            return [.. given.Distinct().Order()];
        }

        if (maxBatchSize <= 0 || !Engine.Equals("cuda", StringComparison.OrdinalIgnoreCase))
        {
            return [];
        }

        var profiles = new List<int>();
        for (var b = 1; b < maxBatchSize; b *= 2)
        {
            profiles.Add(b);
        }

        profiles.Add(maxBatchSize);
        return [.. profiles];
    }

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
            PipelineDepth = EffectivePipelineDepth,
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
