using System.Diagnostics;
using System.Globalization;
using Batchwise.Batching;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Batchwise.Server;

/// <summary>
/// How traces leave the server, from <c>serve --trace-config</c> in Triton's spirit: <c>level=OFF|TIMESTAMPS</c>,
/// <c>rate=N</c> (one request in N), <c>count=N</c> (-1: no limit), <c>mode=opentelemetry</c>,
/// <c>opentelemetry,url=URL</c> (OTLP over HTTP/protobuf, default http://localhost:4318/v1/traces) and
/// <c>opentelemetry,resource=KEY=VALUE</c> (repeatable).
/// </summary>
public sealed record TraceConfig
{
    /// <summary>OTLP/HTTP collector endpoint, as Triton's default.</summary>
    public const string DefaultUrl = "http://localhost:4318/v1/traces";

    /// <summary>OFF (default) or TIMESTAMPS.</summary>
    public string Level { get; init; } = "OFF";

    /// <summary>One request in Rate is traced.</summary>
    public int Rate { get; init; } = 1000;

    /// <summary>Traces left to take; -1: no limit.</summary>
    public int Count { get; init; } = -1;

    /// <summary>Where spans are exported (OTLP over HTTP/protobuf).</summary>
    public string Url { get; init; } = DefaultUrl;

    /// <summary>Resource attributes added to every span (service.name is batchwise unless given).</summary>
    public IReadOnlyDictionary<string, string> Resource { get; init; } = new Dictionary<string, string>();

    /// <summary>Parses --trace-config values; a bad one is a BatchwiseException naming it and the accepted forms.</summary>
    public static TraceConfig Parse(IEnumerable<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var config = new TraceConfig();
        var resource = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var value in values)
        {
            var (section, setting) = value.StartsWith("opentelemetry,", StringComparison.Ordinal) ? ("opentelemetry", value["opentelemetry,".Length..]) : (null, value);
            var eq = setting.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw Bad(value);
            }

            var (key, text) = (setting[..eq], setting[(eq + 1)..]);
            config = (section, key) switch
            {
                (null, "level") => config with { Level = text.ToUpperInvariant() is "OFF" or "TIMESTAMPS" ? text.ToUpperInvariant() : throw Bad(value, "level is OFF or TIMESTAMPS") },
                (null, "rate") => config with { Rate = int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var r) && r >= 1 ? r : throw Bad(value, "rate is a positive integer") },
                (null, "count") => config with { Count = int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var c) && c >= -1 ? c : throw Bad(value, "count is -1 or more") },
                (null, "mode") => text == "opentelemetry" ? config : throw Bad(value, "mode is opentelemetry (spans over OTLP); Triton's file mode is not supported"),
                ("opentelemetry", "url") => config with { Url = text.Contains("://", StringComparison.Ordinal) ? text : "http://" + text },
                ("opentelemetry", "resource") => AddResource(config, resource, text, value),
                _ => throw Bad(value),
            };
        }

        if (!Uri.TryCreate(config.Url, UriKind.Absolute, out _))
        {
            throw Bad("opentelemetry,url=" + config.Url, "url is an absolute URL such as http://collector:4318/v1/traces");
        }

        return config with { Resource = resource };
    }

    private static TraceConfig AddResource(TraceConfig config, Dictionary<string, string> resource, string text, string value)
    {
        var eq = text.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0)
        {
            throw Bad(value, "resource is KEY=VALUE");
        }

        resource[text[..eq]] = text[(eq + 1)..];
        return config;
    }

    private static BatchwiseException Bad(string value, string? why = null) =>
        new($"--trace-config '{value}' is not understood{(why is null ? string.Empty : ": " + why)}",
            "Use level=OFF|TIMESTAMPS, rate=N, count=N, mode=opentelemetry, opentelemetry,url=http://HOST:4318/v1/traces or opentelemetry,resource=KEY=VALUE (repeat the flag for each).");
}

/// <summary>
/// OpenTelemetry spans per request, sampled by <see cref="TraceSettings"/>: one "infer" span from arrival to the last
/// response byte, with children for decoding the inputs (compute_input), waiting in the batcher (queue), the batch
/// execution it ran in (compute_infer; batch.id, batch.size and batch.requests name whom it was batched with) and
/// writing the response (compute_output). Spans are built when the request ends, from the timestamps the statistics
/// already take, so an untraced request costs one sampling decision.
/// </summary>
public sealed class RequestTracing : IDisposable
{
    /// <summary>The ActivitySource the spans come from.</summary>
    public const string SourceName = "Batchwise.Server";

    private static readonly ActivitySource Source = new(SourceName, InferenceServer.Version);
    private readonly TracerProvider _provider;
    private readonly DateTime _originUtc = DateTime.UtcNow;
    private readonly long _originTicks = Stopwatch.GetTimestamp();

    /// <summary>Starts exporting spans: to <paramref name="exporter"/> when given (tests), else over OTLP to the config's URL.</summary>
    public RequestTracing(TraceSettings settings, TraceConfig config, BaseExporter<Activity>? exporter = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        Settings = settings ?? throw new ArgumentNullException(nameof(settings));
        var resource = ResourceBuilder.CreateDefault().AddService(config.Resource.GetValueOrDefault("service.name", "batchwise"), serviceVersion: InferenceServer.Version)
            .AddAttributes(config.Resource.Where(r => r.Key != "service.name").Select(r => new KeyValuePair<string, object>(r.Key, r.Value)));
        var builder = Sdk.CreateTracerProviderBuilder().AddSource(SourceName).SetResourceBuilder(resource).SetSampler(new AlwaysOnSampler());
        builder = exporter is not null
            ? builder.AddProcessor(new SimpleActivityExportProcessor(exporter))
            : builder.AddOtlpExporter(o =>
            {
                o.Endpoint = new Uri(config.Url);
                o.Protocol = OtlpExportProtocol.HttpProtobuf;
            });
        _provider = builder.Build();
    }

    /// <summary>The live sampling settings.</summary>
    public TraceSettings Settings { get; }

    /// <summary>Whether a request to <paramref name="model"/> is traced (decided once, when it arrives).</summary>
    public bool Sample(string model) => Settings.ShouldTrace(model);

    /// <summary>Writes the spans of one finished request.</summary>
    internal void Record(RequestTrace trace, long received, long decoded, long computed, long finished, BatchedResult? result, string? error)
    {
        ActivityContext.TryParse(trace.TraceParent, null, out var remote);
        using var root = Source.StartActivity($"infer {trace.Model}", ActivityKind.Server, remote, Tags(trace), startTime: Utc(received));
        if (root is null)
        {
            return;
        }

        Child(root, "compute_input", received, decoded, []);
        if (result is not null)
        {
            var executed = computed - (long)(result.ComputeTime.TotalSeconds * Stopwatch.Frequency);
            var queued = executed - (long)(result.QueueTime.TotalSeconds * Stopwatch.Frequency);
            Child(root, "queue", queued, executed, []);
            Child(root, "compute_infer", executed, computed, [
                new("batch.id", result.BatchId),
                new("batch.size", result.BatchSize),
                new("batch.requests", result.Requests),
            ]);
            Child(root, "compute_output", computed, finished, []);
        }

        if (error is not null)
        {
            root.SetStatus(ActivityStatusCode.Error, error);
        }

        root.SetEndTime(Utc(finished).UtcDateTime);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _provider.ForceFlush(5000);
        _provider.Dispose();
    }

    private static List<KeyValuePair<string, object?>> Tags(RequestTrace trace)
    {
        var tags = new List<KeyValuePair<string, object?>>
        {
            new("model.name", trace.Model),
            new("model.version", trace.Version),
            new("rpc.system", trace.Protocol),
        };
        if (!string.IsNullOrEmpty(trace.RequestId))
        {
            tags.Add(new("request.id", trace.RequestId));
        }

        return tags;
    }

    private void Child(Activity parent, string name, long from, long to, KeyValuePair<string, object?>[] tags)
    {
        using var span = Source.StartActivity(name, ActivityKind.Internal, parent.Context, tags, startTime: Utc(from));
        span?.SetEndTime(Utc(Math.Max(from, to)).UtcDateTime);
    }

    private DateTimeOffset Utc(long ticks) => _originUtc.AddTicks((long)((ticks - _originTicks) * (TimeSpan.TicksPerSecond / (double)Stopwatch.Frequency)));
}

/// <summary>What a traced request's spans are labelled with.</summary>
internal sealed record RequestTrace(RequestTracing Tracing, string Model, string Version, string Protocol, string? TraceParent)
{
    public string? RequestId { get; set; }
}
