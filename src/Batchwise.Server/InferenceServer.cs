using System.Net;
using Batchwise.Engines;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Batchwise.Server;

/// <summary>Where and how the server listens.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to bind: an IP, localhost, or 0.0.0.0 / * for every interface.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>HTTP/REST port (0: any free port).</summary>
    public int HttpPort { get; init; } = 8000;

    /// <summary>gRPC port (0: any free port).</summary>
    public int GrpcPort { get; init; } = 8001;

    /// <summary>Port of the Prometheus /metrics endpoint, as Triton's (0: any free port; -1: no metrics endpoint).</summary>
    public int MetricsPort { get; init; } = 8002;

    /// <summary>GPU telemetry for the nv_gpu_* metrics (null: the registered source, if any GPU answers).</summary>
    public IGpuTelemetry? Gpus { get; init; }

    /// <summary>Largest request body (HTTP) or message (gRPC), in bytes.</summary>
    public long MaxBodySize { get; init; } = 64L << 20;

    /// <summary>How long a stop waits for requests in flight before cutting them off.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The live trace settings (Triton's trace extension; off unless set).</summary>
    public TraceSettings Traces { get; init; } = new();

    /// <summary>Where traces go (OTLP endpoint, resource); sampling is <see cref="Traces"/>.</summary>
    public TraceConfig Tracing { get; init; } = new();

    /// <summary>Exports spans here instead of over OTLP (tests use OpenTelemetry's in-memory exporter).</summary>
    public OpenTelemetry.BaseExporter<System.Diagnostics.Activity>? TraceExporter { get; init; }

    /// <summary>The live log settings (Triton's logging extension).</summary>
    public LogSettings Logs { get; init; } = new();
}

/// <summary>The inference server: the models of a repository over HTTP/REST and gRPC, with /metrics on a port of its own.</summary>
public sealed class InferenceServer : IAsyncDisposable
{
    /// <summary>Server name reported by GET /v2.</summary>
    public const string Name = "batchwise";

    /// <summary>Protocol extensions this server implements.</summary>
    public static readonly IReadOnlyList<string> Extensions =
        ["classification", "model_repository", "schedule_policy", "model_configuration", "binary_tensor_data", "parameters", "statistics", "trace", "logging"];

    private readonly WebApplication _app;
    private readonly ModelRepository _models;
    private int _stopped;
    private RequestTracing? _tracing;

    private InferenceServer(WebApplication app, ModelRepository models, ServerOptions options, Uri http, Uri grpc)
    {
        _app = app;
        Options = options;
        _models = models;
        HttpAddress = http;
        GrpcAddress = grpc;
    }

    /// <summary>Server version reported by GET /v2.</summary>
    public static string Version => typeof(InferenceServer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>The HTTP/REST base address actually bound.</summary>
    public Uri HttpAddress { get; }

    /// <summary>The options the server runs with (its live trace and log settings included).</summary>
    public ServerOptions Options { get; }

    /// <summary>The metrics address actually bound (GET /metrics), or null when the server has none.</summary>
    public Uri? MetricsAddress { get; private init; }

    /// <summary>The gRPC address actually bound.</summary>
    public Uri GrpcAddress { get; }

    /// <summary>The models served.</summary>
    public ModelRepository Models => _models;

    /// <summary>Binds the ports and starts serving <paramref name="models"/> (which the server then owns).</summary>
    public static async Task<InferenceServer> StartAsync(ModelRepository models, ServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(options);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new ServerLogProvider(options.Logs)).SetMinimumLevel(LogLevel.Trace);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout);
        ListenOptions? http = null, grpc = null, metrics = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodySize;
            k.AddServerHeader = false;
            http = Listen(k, options.Host, options.HttpPort, HttpProtocols.Http1);
            grpc = Listen(k, options.Host, options.GrpcPort, HttpProtocols.Http2);
            if (options.MetricsPort >= 0)
            {
                metrics = Listen(k, options.Host, options.MetricsPort, HttpProtocols.Http1);
            }
        });
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = (int)Math.Min(int.MaxValue, options.MaxBodySize);
            o.MaxSendMessageSize = null;
        });
        var tracing = new RequestTracing(options.Traces, options.Tracing, options.TraceExporter);
        builder.Services.AddSingleton(models);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(tracing);
        var app = builder.Build();
        HttpEndpoints.UseProtocolErrors(app);

        // /metrics lives on its own port, as Triton's, and nothing else is served there.
        app.Use(async (ctx, next) =>
        {
            var onMetricsPort = metrics?.IPEndPoint is { } m && ctx.Connection.LocalPort == m.Port;
            if (onMetricsPort != ctx.Request.Path.Equals("/metrics", StringComparison.Ordinal))
            {
                ctx.Response.StatusCode = 404;
                await HttpEndpoints.WriteErrorAsync(ctx, 404, onMetricsPort
                    ? $"Not Found: the metrics port serves GET /metrics only"
                    : metrics?.IPEndPoint is { } port ? $"Not Found: metrics are served on port {port.Port} (GET /metrics)" : "Not Found: this server has no metrics endpoint").ConfigureAwait(false);
                return;
            }

            await next(ctx).ConfigureAwait(false);
        });
        app.MapGrpcService<GrpcInferenceEndpoint>();
        app.MapMetrics("/metrics", models.Metrics.Registry);
        models.Metrics.AttachGpus(options.Gpus ?? GpuTelemetry.TryCreate());
        HttpEndpoints.Map(app, models, options, tracing);
        app.Lifetime.ApplicationStopping.Register(models.MarkStopping);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            tracing.Dispose();
            throw new BatchwiseException($"Cannot listen on {options.Host} ports {options.HttpPort}/{options.GrpcPort}/{options.MetricsPort}: {e.Message}", "Pick free ports with --http-port, --grpc-port and --metrics-port (0 picks any).", e);
        }

        var host = options.Host is "0.0.0.0" or "*" ? "127.0.0.1" : options.Host.Contains(':', StringComparison.Ordinal) ? $"[{options.Host}]" : options.Host;
        return new InferenceServer(app, models, options, new Uri($"http://{host}:{http!.IPEndPoint!.Port}"), new Uri($"http://{host}:{grpc!.IPEndPoint!.Port}"))
        {
            _tracing = tracing,
            MetricsAddress = metrics?.IPEndPoint is { } mp ? new Uri($"http://{host}:{mp.Port}") : null,
        };
    }

    /// <summary>Completes when the host is asked to stop (SIGTERM, Ctrl+C, or <see cref="StopAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops taking connections, lets requests in flight finish (up to the drain timeout), then drains every model's queue.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        _models.MarkStopping();
        await _app.StopAsync().ConfigureAwait(false);
        await _models.DisposeAsync().ConfigureAwait(false);
        _tracing?.Dispose();
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private static ListenOptions Listen(KestrelServerOptions k, string host, int port, HttpProtocols protocols)
    {
        ListenOptions? result = null;
        void Configure(ListenOptions o)
        {
            o.Protocols = protocols;
            result = o;
        }

        if (host is "0.0.0.0" or "*")
        {
            k.Listen(IPAddress.Any, port, Configure);
        }
        else if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            k.Listen(IPAddress.Loopback, port, Configure);
        }
        else if (IPAddress.TryParse(host, out var ip))
        {
            k.Listen(ip, port, Configure);
        }
        else
        {
            throw new BatchwiseException($"--host '{host}' is not an IP address", "Use 127.0.0.1 (default), localhost, 0.0.0.0 or an address of this machine.");
        }

        return result!;
    }
}
