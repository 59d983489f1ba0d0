using System.Net;
using Batchwise.Engines;
using Batchwise.Server.SharedMemory;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
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

    /// <summary>CUDA IPC for the CUDA shared memory extension (null: the registered source, if a GPU answers; none: the extension is refused and not listed).</summary>
    public ICudaIpc? CudaIpc { get; init; }

    /// <summary>Largest request body (HTTP) or message (gRPC), in bytes.</summary>
    public long MaxBodySize { get; init; } = 64L << 20;

    /// <summary>
    /// Bytes of each block Kestrel receives into and its pipes and HTTP/2 request bodies are made of (--receive-block-kb;
    /// 16 KB..16 MB). Larger blocks: fewer receive calls per request, and fewer rounds of Kestrel's HTTP/2 input copy (one
    /// block per round, each waiting for the frame reader) per gRPC message; each connection or stream with data waiting
    /// holds at least one block.
    /// </summary>
    public int ReceiveBlockBytes { get; init; } = DefaultReceiveBlockBytes;

    /// <summary>The receive block size unless told otherwise (64 KB).</summary>
    public const int DefaultReceiveBlockBytes = 64 << 10;

    /// <summary>
    /// The HTTP/2 SETTINGS_MAX_FRAME_SIZE the gRPC port announces (--http2-max-frame-kb; 16 KB..16 MB - 1 byte): grpcio
    /// clients and the load generator send DATA frames this large; Kestrel handles a DATA frame only once all of it is in.
    /// </summary>
    public int Http2MaxFrameBytes { get; init; } = DefaultHttp2MaxFrameBytes;

    /// <summary>The HTTP/2 frame size announced unless told otherwise (256 KB: a 602 KB message in 3 frames).</summary>
    public const int DefaultHttp2MaxFrameBytes = 256 << 10;

    /// <summary>
    /// Kestrel's socket transport runs what reads a connection's input on the thread that received it, instead of handing
    /// it to the thread pool (--inline-io; Kestrel's UnsafePreferInlineScheduling): one thread-pool hop less per receive
    /// and per send for a lone request, but a request handler that blocks (a lone request's inference runs inline on
    /// its caller's thread) then holds up the other connections of that I/O thread. Off by default. It also asks the
    /// runtime to complete socket operations inline (<see cref="InlineSocketCompletions"/>), which Kestrel's option
    /// needs to take the hop out of the runtime's layer too, when the process has used no socket before the server.
    /// </summary>
    public bool InlineIoScheduling { get; init; }

    /// <summary>How long a stop waits for requests in flight before cutting them off.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Most bytes one request's decoded input tensors may take (--max-request-bytes).</summary>
    public long MaxRequestBytes { get; init; } = 256L << 20;

    /// <summary>Most bytes all accepted, unanswered requests may hold together: bodies, parsed JSON, decoded tensors (--max-queue-bytes).</summary>
    public long MaxQueueBytes { get; init; } = 1L << 30;

    /// <summary>PEM certificate (chain) for TLS on every port (HTTP, gRPC, metrics); null serves plain HTTP/2 and HTTP/1.1.</summary>
    public string? TlsCertificatePath { get; init; }

    /// <summary>PEM private key of <see cref="TlsCertificatePath"/>.</summary>
    public string? TlsKeyPath { get; init; }

    /// <summary>PEM CA certificate(s): when set, clients must present a certificate it signed (mutual TLS).</summary>
    public string? TlsClientCaPath { get; init; }

    /// <summary>A file holding the bearer token every call but health needs; null: no authentication.</summary>
    public string? AuthTokenFile { get; init; }

    /// <summary>The live trace settings (Triton's trace extension; off unless set).</summary>
    public TraceSettings Traces { get; init; } = new();

    /// <summary>Where traces go (OTLP endpoint, resource); sampling is <see cref="Traces"/>.</summary>
    public TraceConfig Tracing { get; init; } = new();

    /// <summary>Exports spans here instead of over OTLP (tests use OpenTelemetry's in-memory exporter).</summary>
    public OpenTelemetry.BaseExporter<System.Diagnostics.Activity>? TraceExporter { get; init; }

    /// <summary>The live log settings (Triton's logging extension).</summary>
    public LogSettings Logs { get; init; } = new();
}

/// <summary>What a stop did: requests answered while draining, and those cut off at the drain timeout.</summary>
/// <param name="Accepted">Inference requests accepted since the server started.</param>
/// <param name="InFlightAtStop">Requests accepted and unanswered when the stop began.</param>
/// <param name="Dropped">Requests still unanswered when the drain timeout ran out (their connections were closed).</param>
/// <param name="Duration">How long the stop took.</param>
public sealed record DrainReport(long Accepted, int InFlightAtStop, int Dropped, TimeSpan Duration);

/// <summary>The inference server: the models of a repository over HTTP/REST and gRPC, with /metrics on a port of its own.</summary>
public sealed class InferenceServer : IAsyncDisposable
{
    /// <summary>Server name reported by GET /v2.</summary>
    public const string Name = "batchwise";

    /// <summary>Protocol extensions this server implements everywhere (cuda_shared_memory is added where a GPU and driver answer: see <see cref="ExtensionsWith"/>).</summary>
    public static readonly IReadOnlyList<string> Extensions =
        ["classification", "model_repository", "schedule_policy", "model_configuration", "system_shared_memory", "binary_tensor_data", "parameters", "statistics", "trace", "logging"];

    /// <summary>The extensions a server lists: <see cref="Extensions"/>, and cuda_shared_memory when it works here.</summary>
    internal static IReadOnlyList<string> ExtensionsWith(SystemSharedMemoryRegistry sharedMemory) =>
        sharedMemory.Cuda.IsAvailable ? [.. Extensions, "cuda_shared_memory"] : Extensions;

    private readonly WebApplication _app;
    private readonly ModelRepository _models;
    private readonly RequestAdmission _admission;
    private readonly ServerOptions _options;
    private readonly object _stopGate = new();
    private Task<DrainReport>? _stop;
    private RequestTracing? _tracing;
    private SystemSharedMemoryRegistry? _sharedMemory;

    private InferenceServer(WebApplication app, ModelRepository models, RequestAdmission admission, ServerOptions options, Uri http, Uri grpc)
    {
        _app = app;
        Options = options;
        _models = models;
        _admission = admission;
        _options = options;
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

    /// <summary>The admission every inference request passes (requests in flight, memory held).</summary>
    public RequestAdmission Admission => _admission;

    /// <summary>Binds the ports and starts serving <paramref name="models"/> (which the server then owns).</summary>
    public static async Task<InferenceServer> StartAsync(ModelRepository models, ServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(options);
        var admission = new RequestAdmission(options.MaxRequestBytes, options.MaxQueueBytes);
        if (options.DrainTimeout < TimeSpan.Zero)
        {
            throw new BatchwiseException($"--drain-timeout {options.DrainTimeout.TotalSeconds} s is negative", "Give 0 (no drain) or more seconds.");
        }

        if (options.ReceiveBlockBytes is < ReceiveBlockPool.MinBlockSize or > ReceiveBlockPool.MaxBlockSize)
        {
            throw new BatchwiseException($"--receive-block-kb {options.ReceiveBlockBytes / 1024.0:0.###} is outside {ReceiveBlockPool.MinBlockSize >> 10}..{ReceiveBlockPool.MaxBlockSize >> 10} KB", "Give the size of Kestrel's receive blocks in KB, e.g. --receive-block-kb 64 (the default) or 1024.");
        }

        if (options.Http2MaxFrameBytes is < (16 << 10) or > ((16 << 20) - 1))
        {
            throw new BatchwiseException($"--http2-max-frame-kb {options.Http2MaxFrameBytes / 1024.0:0.###} is outside HTTP/2's 16..16383 KB", "Give the largest HTTP/2 frame the gRPC port accepts in KB, e.g. --http2-max-frame-kb 256 (the default).");
        }

        var tls = ServerSecurity.LoadTls(options);
        var token = ServerSecurity.LoadToken(options.AuthTokenFile);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new ServerLogProvider(options.Logs)).SetMinimumLevel(LogLevel.Trace);

        // A failed bind is reported once, as one line, by the caller; the host would also log it with its stack.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);

        // A malformed gRPC message is the client's error (answered INVALID_ARGUMENT), not a stack trace in our log per request.
        builder.Logging.AddFilter("Grpc.AspNetCore.Server.ServerCallHandler", LogLevel.None);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>>(new ReceiveBlockPool.Factory(options.ReceiveBlockBytes));
        if (options.InlineIoScheduling)
        {
            InlineSocketCompletions.TryPreferInline();
        }

        builder.Services.Configure<Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions>(o => o.UnsafePreferInlineScheduling = options.InlineIoScheduling);
        ListenOptions? http = null, grpc = null, metrics = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodySize;
            k.AddServerHeader = false;

            // gRPC messages of hundreds of KB (a 224x224 image is 602 KB): HTTP/2 flow-control windows large enough that
            // a whole message, and many streams' messages at once, arrive without waiting on WINDOW_UPDATE round trips
            // (Kestrel's defaults are 768 KB per stream and 1 MB per connection, shared by every stream).
            k.Limits.Http2.InitialStreamWindowSize = 4 << 20;
            k.Limits.Http2.InitialConnectionWindowSize = 32 << 20;

            // Clients that send frames as large as the server allows (grpcio / C-core, as tritonclient and perf_analyzer)
            // then carry a 602 KB message in 3 DATA frames instead of 37 of Kestrel's default 16 KB, each of which wakes
            // the stream's reader; 256 KB (the default) stays below the connection's 1 MB input buffer. More streams per
            // connection than the default 100, so one client connection can keep a concurrency of a few hundred in flight.
            k.Limits.Http2.MaxFrameSize = options.Http2MaxFrameBytes;
            k.Limits.Http2.MaxStreamsPerConnection = 512;
            http = Listen(k, options.Host, options.HttpPort, HttpProtocols.Http1, tls);
            grpc = Listen(k, options.Host, options.GrpcPort, HttpProtocols.Http2, tls);
            if (options.MetricsPort >= 0)
            {
                // Same TLS and token as the other ports: a scraper given the token must not send it in the clear.
                metrics = Listen(k, options.Host, options.MetricsPort, HttpProtocols.Http1, tls);
            }
        });
        builder.Services.AddGrpc(o =>
        {
            // Our handlers turn every failure into a precise status themselves; the framework's own (a message that is
            // not valid protobuf) then carries the parser's reason, which GrpcMessageErrors turns into INVALID_ARGUMENT.
            o.EnableDetailedErrors = true;
            o.MaxReceiveMessageSize = (int)Math.Min(int.MaxValue, options.MaxBodySize);
            o.MaxSendMessageSize = null;
        });
        var tracing = new RequestTracing(options.Traces, options.Tracing, options.TraceExporter);
        builder.Services.AddSingleton<Grpc.AspNetCore.Server.Model.IServiceMethodProvider<GrpcInferenceEndpoint>, GrpcInferenceMethods>();
        builder.Services.AddSingleton(models);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(tracing);
        builder.Services.AddSingleton(admission);
        var cudaUnavailable = string.Empty;
        var cudaIpc = options.CudaIpc ?? Engines.CudaIpc.TryCreate(out cudaUnavailable);
        var sharedMemory = new SystemSharedMemoryRegistry(cuda: cudaIpc, cudaUnavailableReason: cudaUnavailable);
        builder.Services.AddSingleton(sharedMemory);
        var app = builder.Build();
        HttpEndpoints.UseProtocolErrors(app);

        // Once draining, an HTTP/1.1 response closes its connection (Connection: close), so no client sends its next request
        // on a kept-alive connection that the stop is about to close: it would see the connection cut, not an answer. One
        // hook for every request, its state the context: nothing allocated per request.
        Func<object, Task> closeWhenDraining = state =>
        {
            var context = (HttpContext)state;
            if (admission.IsDraining)
            {
                context.Response.Headers.Connection = "close";
            }

            return Task.CompletedTask;
        };
        app.Use((ctx, next) =>
        {
            if (HttpProtocol.IsHttp11(ctx.Request.Protocol))
            {
                ctx.Response.OnStarting(closeWhenDraining, ctx);
            }

            return next(ctx);
        });
        if (token is not null)
        {
            app.Use(ServerSecurity.RequireToken(token));
        }

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
        app.Use(GrpcMessageErrors.Rewrite);

        app.MapGrpcService<GrpcInferenceEndpoint>();
        app.MapMetrics("/metrics", models.Metrics.Registry);
        models.Metrics.AttachGpus(options.Gpus ?? GpuTelemetry.TryCreate());
        HttpEndpoints.Map(app, models, options, tracing, admission, sharedMemory);
        app.Lifetime.ApplicationStopping.Register(models.MarkStopping);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            tracing.Dispose();
            var message = e.InnerException is { } inner && !e.Message.Contains(inner.Message, StringComparison.Ordinal) ? $"{e.Message.TrimEnd('.')}: {inner.Message}" : e.Message;
            throw new BatchwiseException($"Cannot listen on {options.Host} ports {options.HttpPort}/{options.GrpcPort}/{options.MetricsPort}: {message}", "Pick free ports with --http-port, --grpc-port and --metrics-port (0 picks any).", e);
        }

        var host = options.Host is "0.0.0.0" or "*" ? "127.0.0.1" : options.Host.Contains(':', StringComparison.Ordinal) ? $"[{options.Host}]" : options.Host;
        var scheme = tls is null ? "http" : "https";
        return new InferenceServer(app, models, admission, options, new Uri($"{scheme}://{host}:{http!.IPEndPoint!.Port}"), new Uri($"{scheme}://{host}:{grpc!.IPEndPoint!.Port}"))
        {
            _tracing = tracing,
            _sharedMemory = sharedMemory,
            MetricsAddress = metrics?.IPEndPoint is { } mp ? new Uri($"{scheme}://{host}:{mp.Port}") : null,
        };
    }

    /// <summary>Completes when the host is asked to stop (SIGTERM, Ctrl+C, or <see cref="StopAsync"/>); the caller then calls <see cref="StopAsync"/> to drain.</summary>
    public async Task WaitForShutdownAsync(CancellationToken cancellationToken = default)
    {
        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = _app.Lifetime.ApplicationStopping.Register(() => stopping.TrySetResult());
        await stopping.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Drains and stops: refuses new requests (503 / UNAVAILABLE) and new connections, lets every accepted request
    /// finish within the drain timeout, closes what is left (counted in <see cref="DrainReport.Dropped"/> and logged),
    /// then releases every model. Calling it again returns the same report.
    /// </summary>
    public Task<DrainReport> StopAsync()
    {
        lock (_stopGate)
        {
            return _stop ??= StopCoreAsync();
        }
    }

    /// <summary>How long refusals must have stopped before the drain closes the listener.</summary>
    private static readonly TimeSpan DrainQuietPeriod = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest the drain waits for refusals to stop (a client that retries at once never does).</summary>
    private static readonly TimeSpan DrainQuietLimit = TimeSpan.FromSeconds(1);

    private async Task<DrainReport> StopCoreAsync()
    {
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        _admission.BeginDrain();
        _models.MarkStopping();
        var inFlight = _admission.InFlight;
        var dropped = 0;
        using (var deadline = new CancellationTokenSource(_options.DrainTimeout))
        {
            // Every accepted request is counted by the admission; wait for them first, then stop Kestrel (which stops
            // listening at once, lets connections finish, and closes what is left).
            try
            {
                await _admission.WhenIdleAsync(deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                dropped = _admission.InFlight;
            }

            // While clients still arrive, keep refusing them (503, their responses closing the connection) until they
            // have been quiet a moment, at most a second: closing the listener under them resets the connections queued
            // in its backlog and cuts requests sent on a kept-alive connection, where a 503 tells them to go elsewhere.
            var quietWait = System.Diagnostics.Stopwatch.GetTimestamp();
            while (dropped == 0 && _admission.SinceLastRefusal < DrainQuietPeriod && System.Diagnostics.Stopwatch.GetElapsedTime(quietWait) < DrainQuietLimit && !deadline.IsCancellationRequested)
            {
                await Task.Delay(DrainQuietPeriod / 4, CancellationToken.None).ConfigureAwait(false);
            }

            try
            {
                await _app.StopAsync(dropped > 0 ? new CancellationToken(canceled: true) : deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Kestrel closed the connections still open.
            }
        }

        if (dropped > 0)
        {
            _app.Logger.LogWarning("Drain timeout ({Seconds} s) reached: {Dropped} accepted requests were dropped unanswered", _options.DrainTimeout.TotalSeconds, dropped);
        }

        await _models.DisposeAsync().ConfigureAwait(false);
        _tracing?.Dispose();
        _sharedMemory?.Dispose();
        return new DrainReport(_admission.Accepted, inFlight, dropped, System.Diagnostics.Stopwatch.GetElapsedTime(start));
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private static ListenOptions Listen(KestrelServerOptions k, string host, int port, HttpProtocols protocols, Microsoft.AspNetCore.Server.Kestrel.Https.HttpsConnectionAdapterOptions? tls)
    {
        ListenOptions? result = null;
        void Configure(ListenOptions o)
        {
            o.Protocols = protocols;
            if (tls is not null)
            {
                o.UseHttps(tls);
            }

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
