using System.CommandLine;
using System.Globalization;
using Batchwise.Cli.Options;
using Batchwise.Server;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise serve MODEL` or `batchwise serve --models DIR`: the Open Inference Protocol over HTTP and gRPC.</summary>
public static class ServeCommand
{
    /// <summary>Creates the serve command.</summary>
    public static Command Create()
    {
        var model = new Argument<string?>("model") { Description = "One model to serve: a .onnx file (served under its file name) or zoo:NAME", Arity = ArgumentArity.ZeroOrOne };
        var models = new Option<string?>("--models") { Description = "A model repository: one subfolder per model holding model.onnx and an optional config.json" };
        var name = new Option<string?>("--name") { Description = "Name to serve the single model under (default: file name without extension, or the zoo name)" };
        var host = new Option<string>("--host") { Description = "Address to listen on (0.0.0.0 for every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var httpPort = new Option<int>("--http-port") { Description = "HTTP/REST port (0: any free port)", DefaultValueFactory = _ => 8000 };
        var grpcPort = new Option<int>("--grpc-port") { Description = "gRPC port (0: any free port)", DefaultValueFactory = _ => 8001 };
        var metricsPort = new Option<int>("--metrics-port") { Description = "Prometheus GET /metrics port, as Triton's (0: any free port; -1: none)", DefaultValueFactory = _ => 8002 };
        var maxBody = new Option<long>("--max-body-size") { Description = "Largest request body or gRPC message, in bytes", DefaultValueFactory = _ => 64L << 20 };
        var maxBatch = SharedOptions.MaxBatchSize();
        var delay = new Option<long>("--max-queue-delay-us") { Description = "Single model: how long the oldest request may wait for others, in microseconds", DefaultValueFactory = _ => 0 };
        var preferred = new Option<string?>("--preferred-batch-size") { Description = "Single model: batch sizes sent at once when reached, e.g. 8,16" };
        var noBatching = new Option<bool>("--no-dynamic-batching") { Description = "Single model: run every request alone (no merging)" };
        var instances = new Option<int>("--instances") { Description = "Single model: model instances, one engine session each, each running up to --pipeline-depth batches at once", DefaultValueFactory = _ => 1 };
        var depth = new Option<int?>("--pipeline-depth") { Description = $"Single model: batches one instance may have in flight at once (1..{ModelConfig.PipelineDepthLimit}); above 1 the cuda engine stages the next batch on the instance's stream while the last one runs [default: 2 on cuda, 1 on ort]" };
        var queue = new Option<int>("--max-queue-size") { Description = "Single model: most queued requests before new ones get 503", DefaultValueFactory = _ => 1024 };
        var control = new Option<string>("--model-control-mode") { Description = "none: load every model at startup; explicit: load and unload by request (POST /v2/repository/models/NAME/load|unload); poll: follow the repository folder", DefaultValueFactory = _ => "none" };
        control.AcceptOnlyFromAmong("none", "explicit", "poll");
        var loadModel = new Option<string[]>("--load-model") { Description = "Explicit mode: a model to load at startup (repeatable; * for every model)", AllowMultipleArgumentsPerToken = false };
        var pollSecs = new Option<int>("--repository-poll-secs") { Description = "Poll mode: seconds between rescans of the repository folder", DefaultValueFactory = _ => 15 };
        var traceConfig = new Option<string[]>("--trace-config") { Description = "OpenTelemetry tracing, as Triton's flag: level=OFF|TIMESTAMPS, rate=N, count=N, opentelemetry,url=URL, opentelemetry,resource=KEY=VALUE (repeatable; off by default)" };
        var exitOnError = new Option<bool>("--exit-on-error") { Description = "Refuse to start when a model fails to load (default: report it in the repository index and serve the others)" };
        var maxRequestBytes = new Option<long>("--max-request-bytes") { Description = "Most bytes one request's decoded input tensors may take (larger: 413 / RESOURCE_EXHAUSTED)", DefaultValueFactory = _ => 256L << 20 };
        var maxQueueBytes = new Option<long>("--max-queue-bytes") { Description = "Most bytes all requests in progress may hold together: bodies, parsed JSON, decoded tensors (over: 503 / RESOURCE_EXHAUSTED)", DefaultValueFactory = _ => 1L << 30 };
        var drainTimeout = new Option<double>("--drain-timeout") { Description = "Seconds SIGTERM / Ctrl+C waits for accepted requests to finish before dropping (and counting) the rest", DefaultValueFactory = _ => 30 };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate (chain): serve HTTPS and gRPC over TLS" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert" };
        var tlsClientCa = new Option<string?>("--tls-client-ca") { Description = "PEM CA certificate: require client certificates it signed (mutual TLS)" };
        var receiveBlock = new Option<int>("--receive-block-kb") { Description = "KB of each block the server receives into (fewer receive calls and HTTP/2 copy rounds per large request with larger blocks; 16..16384)", DefaultValueFactory = _ => ServerOptions.DefaultReceiveBlockBytes >> 10 };
        var maxFrame = new Option<int>("--http2-max-frame-kb") { Description = "Largest HTTP/2 frame the gRPC port accepts, in KB (clients such as grpcio send frames this large; 16..16383)", DefaultValueFactory = _ => ServerOptions.DefaultHttp2MaxFrameBytes >> 10 };
        var inlineIo = new Option<bool>("--inline-io") { Description = "Handle each connection's input on the thread that received it (Kestrel's UnsafePreferInlineScheduling, and the runtime's socket completions inline): fewer thread hops for a lone request, the latency setting; a blocking handler holds up the connections of its I/O thread" };
        var authTokenFile = new Option<string?>("--auth-token-file") { Description = "File holding a bearer token every call but health needs (Authorization: Bearer TOKEN)" };
        var command = new Command("serve", "Serve models over the Open Inference Protocol (KServe v2, as Triton speaks it): HTTP/REST, gRPC, Prometheus /metrics on its own port; the batching and engine options apply to a single model (a repository sets them per model in config.json)")
        {
            model, models, name, host, httpPort, grpcPort, maxBody, maxBatch, delay, preferred, noBatching, instances, depth, queue,
            maxRequestBytes, maxQueueBytes, drainTimeout, tlsCert, tlsKey, tlsClientCa, authTokenFile, receiveBlock, maxFrame, inlineIo,
            control, loadModel, pollSecs, exitOnError, metricsPort, traceConfig,
        };
        var engine = EngineOptionGroup.AddTo(command);
        command.SetGuardedAction(async (parse, ct) =>
        {
            var single = parse.GetValue(model);
            var folder = parse.GetValue(models);
            if ((single is null) == (folder is null))
            {
                throw new BatchwiseException(single is null ? "Nothing to serve" : "Give either a model or --models, not both", "Use `batchwise serve model.onnx`, `batchwise serve zoo:resnet18` or `batchwise serve --models DIR`.");
            }

            if (single is not null && Directory.Exists(single))
            {
                throw new BatchwiseException($"'{single}' is a directory, not a model file", $"Serve it as a model repository (a subfolder per model holding model.onnx): `batchwise serve --models {single}`; or pass the .onnx file inside it.");
            }

            var mode = Enum.Parse<ModelControlMode>(parse.GetValue(control)!, ignoreCase: true);
            var startup = parse.GetValue(loadModel) ?? [];
            if (startup.Length > 0 && mode != ModelControlMode.Explicit)
            {
                throw new BatchwiseException("--load-model applies to --model-control-mode explicit", "Add --model-control-mode explicit, or drop --load-model (the other modes load every model).");
            }

            if (mode == ModelControlMode.Poll && folder is null)
            {
                throw new BatchwiseException("--model-control-mode poll follows a repository folder", "Serve a folder with --models DIR, or use explicit or none.");
            }

            if (parse.GetValue(pollSecs) < 1)
            {
                throw new BatchwiseException($"--repository-poll-secs {parse.GetValue(pollSecs)} is not a positive number of seconds", "Use e.g. --repository-poll-secs 15.");
            }

            var repositoryOptions = new RepositoryOptions
            {
                Mode = mode,
                StartupModels = startup,
                ExitOnError = parse.GetValue(exitOnError),
                PollInterval = TimeSpan.FromSeconds(parse.GetValue(pollSecs)),
                Log = line => Console.WriteLine(line),
            };

            var seconds = parse.GetValue(drainTimeout);
            if (!double.IsFinite(seconds) || seconds < 0 || seconds > 86_400)
            {
                throw new BatchwiseException($"--drain-timeout {seconds} is outside 0..86400 seconds", "Give the seconds a stop waits for accepted requests, e.g. --drain-timeout 30.");
            }

            var tracing = TraceConfig.Parse(parse.GetValue(traceConfig) ?? []);
            var options = new ServerOptions
            {
                Tracing = tracing,
                Traces = new TraceSettings(tracing.Level, tracing.Rate, tracing.Count),
                Host = parse.GetValue(host)!,
                HttpPort = parse.GetValue(httpPort),
                GrpcPort = parse.GetValue(grpcPort),
                MetricsPort = parse.GetValue(metricsPort),
                MaxBodySize = parse.GetValue(maxBody),
                MaxRequestBytes = parse.GetValue(maxRequestBytes),
                MaxQueueBytes = parse.GetValue(maxQueueBytes),
                DrainTimeout = TimeSpan.FromSeconds(seconds),
                TlsCertificatePath = parse.GetValue(tlsCert),
                TlsKeyPath = parse.GetValue(tlsKey),
                TlsClientCaPath = parse.GetValue(tlsClientCa),
                AuthTokenFile = parse.GetValue(authTokenFile),
                ReceiveBlockBytes = KiloBytes("--receive-block-kb", parse.GetValue(receiveBlock)),
                Http2MaxFrameBytes = KiloBytes("--http2-max-frame-kb", parse.GetValue(maxFrame)),
                InlineIoScheduling = parse.GetValue(inlineIo),
            };

            ModelRepository repository;
            if (folder is not null)
            {
                Option[] singleModelOptions = [name, maxBatch, delay, preferred, noBatching, instances, depth, queue, .. engine.All];
                var misplaced = singleModelOptions.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false });
                if (misplaced is not null)
                {
                    throw new BatchwiseException($"{misplaced.Name} applies to a single model, not to a repository", $"Set it per model in {Path.Combine(folder, "NAME", ModelConfig.FileName)}.");
                }

                repository = await ModelRepository.OpenAsync(folder, repositoryOptions).ConfigureAwait(false);
            }
            else
            {
                var config = new ModelConfig
                {
                    MaxBatchSize = parse.GetValue(maxBatch),
                    DynamicBatching = parse.GetValue(noBatching) ? null : new DynamicBatchingConfig
                    {
                        MaxQueueDelayMicroseconds = parse.GetValue(delay),
                        PreferredBatchSize = ParseSizes(parse.GetValue(preferred)),
                        MaxQueueSize = parse.GetValue(queue),
                    },
                    InstanceCount = parse.GetValue(instances),
                    PipelineDepth = parse.GetValue(depth),
                    Engine = engine.EngineName(parse),
                    Precision = parse.GetValue(engine.Precision)!,
                    IntraOpThreads = parse.GetValue(engine.Threads),
                    BatchProfiles = parse.GetValue(engine.BatchProfile) is { Length: > 0 } profiles ? profiles : null,
                    ShapeProfiles = parse.GetValue(engine.ShapeProfile) is { Length: > 0 } shapes ? shapes : null,
                    CommandLineEngineOptions = engine.Read(parse),
                };
                repository = new ModelRepository(options: repositoryOptions);
                try
                {
                    repository.Add(parse.GetValue(name) ?? ModelRepository.NameOf(single!), single!, config);
                }
                catch
                {
                    await repository.DisposeAsync().ConfigureAwait(false);
                    throw;
                }
            }

            InferenceServer server;
            try
            {
                server = await InferenceServer.StartAsync(repository, options, ct).ConfigureAwait(false);
            }
            catch
            {
                await repository.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            await using (server.ConfigureAwait(false))
            {
                foreach (var m in server.Models.Models)
                {
                    var b = m.Batcher;
                    var batching = b.MaxBatchSize > 0
                        ? $"dynamic batching up to {b.MaxBatchSize}, max queue delay {b.MaxQueueDelay.TotalMicroseconds:F0} us" + (b.PreferredBatchSizes.Count > 0 ? $", preferred {string.Join(",", b.PreferredBatchSizes)}" : string.Empty)
                        : m.MaxBatchSize > 0 ? $"no dynamic batching (requests up to batch {m.MaxBatchSize} run alone)" : "no batch axis";
                    Console.WriteLine($"model {m.Name} v{m.Version}: {m.Engine}, {b.InstanceCount} instance(s){(b.PipelineDepth > 1 ? $" x {b.PipelineDepth} batches in flight" : string.Empty)}, {batching}; inputs {string.Join(", ", m.Inputs)}");
                }

                Console.WriteLine($"serving HTTP on {server.HttpAddress} (GET /v2, POST /v2/models/NAME/infer), gRPC on {server.GrpcAddress}, " +
                    (server.MetricsAddress is { } metricsAt ? $"metrics on {metricsAt}metrics" : "no metrics endpoint") + "; Ctrl+C or SIGTERM drains and stops");
                try
                {
                    await server.WaitForShutdownAsync(ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // Ctrl+C or SIGTERM: fall through to a graceful drain.
                }

                Console.WriteLine($"stopping: {server.Admission.InFlight} accepted requests in flight; new requests get 503 / UNAVAILABLE; waiting up to {options.DrainTimeout.TotalSeconds:0.#} s (--drain-timeout)");
                var drain = await server.StopAsync().ConfigureAwait(false);
                Console.WriteLine(drain.Dropped == 0
                    ? $"stopped: every accepted request answered ({drain.Accepted} in all, {drain.InFlightAtStop} drained) in {drain.Duration.TotalSeconds:0.0} s"
                    : $"stopped: {drain.Dropped} accepted requests dropped unanswered at the drain timeout ({options.DrainTimeout.TotalSeconds:0.#} s); {drain.Accepted - drain.Dropped} of {drain.Accepted} answered");
            }

            return 0;
        });
        return command;
    }

    /// <summary>A size option given in KB, in bytes (the server checks its range and names the option).</summary>
    private static int KiloBytes(string option, int kb) => kb is > 0 and <= int.MaxValue >> 10
        ? kb << 10
        : throw new BatchwiseException($"{option} {kb} is not a positive number of KB", $"Give a size in KB, e.g. {option} 256.");

    private static int[]? ParseSizes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : throw new BatchwiseException($"--preferred-batch-size '{text}' is not a list of positive integers", "Write e.g. --preferred-batch-size 8,16."))
            .ToArray();
    }
}
