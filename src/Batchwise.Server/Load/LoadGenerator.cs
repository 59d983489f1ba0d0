using System.Collections.Concurrent;
using System.Diagnostics;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Reports;

namespace Batchwise.Server.Load;

/// <summary>What to load and how: one point per concurrency level or per request rate.</summary>
public sealed record LoadOptions
{
    /// <summary>Server base URL (the gRPC port for grpc).</summary>
    public required Uri Url { get; init; }

    /// <summary>Model name.</summary>
    public required string Model { get; init; }

    /// <summary>http or grpc.</summary>
    public string Protocol { get; init; } = "http";

    /// <summary>HTTP: send tensors as JSON arrays instead of binary tensor data (for servers without that extension).</summary>
    public bool JsonData { get; init; }

    /// <summary>none: inputs in each request; system: inputs written once into a POSIX shared memory region registered with the server; cuda: into device memory registered through its CUDA IPC handle (perf_analyzer's --shared-memory).</summary>
    public string SharedMemory { get; init; } = "none";

    /// <summary>gRPC's ModelInfer calls: frames (the load generator's own HTTP/2 connections, frames as large as the server allows) or grpc-dotnet (Grpc.Net.Client: 16 KB frames, each its own send).</summary>
    public string GrpcClient { get; init; } = "frames";

    /// <summary>CUDA IPC for --shared-memory cuda (null: the registered source; tests give their own).</summary>
    public ICudaIpc? CudaIpc { get; init; }

    /// <summary>Closed-loop points: clients each with one request outstanding.</summary>
    public IReadOnlyList<int> Concurrency { get; init; } = [];

    /// <summary>Open-loop points: Poisson arrivals at these rates (requests per second).</summary>
    public IReadOnlyList<double> RequestRates { get; init; } = [];

    /// <summary>Batch size put in the first (dynamic) dimension.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>Explicit input shapes by name.</summary>
    public Benchmarking.ShapeBindings Shapes { get; init; } = Benchmarking.ShapeBindings.None;

    /// <summary>Load applied and discarded before each point.</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>One measurement window.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Windows that must agree for a point to be stable.</summary>
    public int StableWindows { get; init; } = 3;

    /// <summary>Most windows measured per point before it is reported as unstable.</summary>
    public int MaxWindows { get; init; } = 6;

    /// <summary>Tolerance of perf_analyzer's stability rule: each of the last windows' throughput and p50 latency within this fraction of their mean.</summary>
    public double StabilityThreshold { get; init; } = 0.10;

    /// <summary>Per-request timeout.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Open loop: most requests outstanding; arrivals beyond it count as errors (client_overflow).</summary>
    public int MaxOutstanding { get; init; } = 2048;

    /// <summary>Seed for input data and arrivals.</summary>
    public int Seed { get; init; }
}

/// <summary>
/// perf_analyzer-style load: closed loop (N clients, each sending its next request when the last returns) or open
/// loop (Poisson arrivals at a fixed rate, latency counted from the scheduled arrival so queueing is not hidden).
/// </summary>
public sealed class LoadGenerator
{
    private readonly LoadOptions _options;

    /// <summary>Creates a generator.</summary>
    public LoadGenerator(LoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Concurrency.Count == 0 == (options.RequestRates.Count == 0))
        {
            throw new BatchwiseException("Give either --concurrency or --request-rate", "e.g. --concurrency 1,8,32 or --request-rate 50,100.");
        }

        if (options.Concurrency.Any(c => c < 1) || options.RequestRates.Any(r => r <= 0 || double.IsNaN(r)))
        {
            throw new BatchwiseException("Concurrency and request rates must be positive", "e.g. --concurrency 1,8,32.");
        }

        if (options.StableWindows < 1 || options.MaxWindows < options.StableWindows || options.Window <= TimeSpan.Zero)
        {
            throw new BatchwiseException("Measurement windows are inconsistent", "Use a positive --duration.");
        }

        _options = options;
    }

    /// <summary>Runs every point; <paramref name="progress"/> hears each one as it completes.</summary>
    public async Task<LoadReport> RunAsync(Action<string>? progress = null, CancellationToken cancellationToken = default)
    {
        using var client = InferenceClient.Create(_options.Protocol, _options.Url, _options.RequestTimeout, _options.JsonData, _options.SharedMemory, _options.CudaIpc, _options.GrpcClient);
        try
        {
            return await RunAsync(client, progress, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await client.ReleaseSharedMemoryAsync().ConfigureAwait(false);
        }
    }

    private async Task<LoadReport> RunAsync(InferenceClient client, Action<string>? progress, CancellationToken cancellationToken)
    {
        var metadata = await client.GetInputsAsync(_options.Model, cancellationToken).ConfigureAwait(false);
        var inputs = LoadInputs.Generate(metadata, _options.BatchSize, _options.Shapes, _options.Seed);
        await client.PrepareAsync(_options.Model, inputs, cancellationToken).ConfigureAwait(false);
        var probe = await client.InferAsync(cancellationToken).ConfigureAwait(false);
        if (!probe.Ok)
        {
            throw new BatchwiseException($"A first request to '{_options.Model}' failed ({probe.Error})", "Send one request by hand (curl POST /v2/models/NAME/infer) to see the server's error.");
        }

        var points = new List<LoadPoint>();
        foreach (var c in _options.Concurrency)
        {
            var point = await MeasureAsync(client, c, null, cancellationToken).ConfigureAwait(false);
            points.Add(point);
            progress?.Invoke(Describe(point));
        }

        foreach (var r in _options.RequestRates)
        {
            var point = await MeasureAsync(client, null, r, cancellationToken).ConfigureAwait(false);
            points.Add(point);
            progress?.Invoke(Describe(point));
        }

        return new LoadReport(_options.Url.ToString(), _options.Model, _options.Protocol, _options.BatchSize, LoadInputs.Describe(inputs) + (client.SharedMemory switch { "system" => "; inputs in system shared memory", "cuda" => "; inputs in CUDA shared memory (GPU 0)", _ => string.Empty }), DateTimeOffset.UtcNow.ToString("u", System.Globalization.CultureInfo.InvariantCulture), HostInfo.MachineName, HostInfo.CpuName, HostInfo.LogicalCores, points);
    }

    /// <summary>One line for a point.</summary>
    public static string Describe(LoadPoint p) =>
        $"{(p.Concurrency is { } c ? $"concurrency {c}" : $"rate {p.RequestRate:F1}/s")}: {p.InferencesPerSecond:F1} infer/s, p50 {p.Latency.P50:F2} ms, p90 {p.Latency.P90:F2} ms, p99 {p.Latency.P99:F2} ms, {p.Errors} errors{(p.Stable ? string.Empty : $" (unstable: throughput spread {p.ThroughputSpreadPercent:F0}%)")}; {DescribeClient(p)}";

    /// <summary>The load generator's own cost and ceiling at a point, and whether it, not the server, may be the limit.</summary>
    public static string DescribeClient(LoadPoint p) =>
        $"client {p.ClientCpuMillisecondsPerRequest:F3} ms CPU/request, {p.ClientCoresBusy:F2} cores busy, ceiling {p.ClientCeilingRequestsPerSecond:F0} req/s on {Environment.ProcessorCount} cores"
        + (p.ClientBound ? " — CLIENT-BOUND: the load generator, not the server, may be the limit here" : string.Empty);

    /// <summary>
    /// The client-side fields of a point: CPU per request, cores busy, the ceiling it implies on <paramref name="cores"/>
    /// cores, and the client-bound rule: it kept at least half the cores busy (running at a share of its ceiling is the
    /// same share of the cores busy, so this also says it was within 2x of its own ceiling).
    /// </summary>
    public static LoadPoint WithClientCost(LoadPoint p, double cpuSeconds, long requestsSent, int cores)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (requestsSent <= 0 || cpuSeconds <= 0 || p.SecondsMeasured <= 0)
        {
            return p;
        }

        var perRequest = cpuSeconds / requestsSent;
        var busy = cpuSeconds / p.SecondsMeasured;
        var ceiling = cores / perRequest;
        return p with
        {
            ClientCpuMillisecondsPerRequest = perRequest * 1000,
            ClientCoresBusy = busy,
            ClientCeilingRequestsPerSecond = ceiling,
            ClientBound = busy >= cores / 2.0,
        };
    }

    private async Task<LoadPoint> MeasureAsync(InferenceClient client, int? concurrency, double? rate, CancellationToken cancellationToken)
    {
        var samples = new ConcurrentQueue<Sample>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var origin = Stopwatch.GetTimestamp();
        var driver = concurrency is { } n
            ? Task.WhenAll(Enumerable.Range(0, n).Select(_ => Task.Run(() => ClosedLoopAsync(client, samples, origin, stop.Token), CancellationToken.None)))
            : Task.Run(() => OpenLoopAsync(client, rate!.Value, samples, origin, stop.Token), CancellationToken.None);

        // Warm-up, then windows until the last few agree (or the most windows were measured).
        var windows = new List<WindowStats>();
        var cpuAtWindow = new List<TimeSpan>();
        var measureStart = _options.Warmup.TotalSeconds;
        try
        {
            await Task.Delay(_options.Warmup, cancellationToken).ConfigureAwait(false);
            cpuAtWindow.Add(ProcessCpu());
            var drained = new List<Sample>();
            while (windows.Count < _options.MaxWindows)
            {
                await Task.Delay(_options.Window, cancellationToken).ConfigureAwait(false);
                cpuAtWindow.Add(ProcessCpu());
                var end = measureStart + ((windows.Count + 1) * _options.Window.TotalSeconds);
                var start = end - _options.Window.TotalSeconds;
                while (samples.TryDequeue(out var s))
                {
                    drained.Add(s);
                }

                windows.Add(new WindowStats(start, end, drained.Where(s => s.End > start && s.End <= end).ToList()));
                if (IsStable(windows))
                {
                    break;
                }
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await driver.ConfigureAwait(false);
        }

        var reported = windows.TakeLast(_options.StableWindows).ToList();
        var all = reported.SelectMany(w => w.Samples).ToList();
        var ok = all.Where(s => s.Error is null).Select(s => s.LatencySeconds * 1000).ToList();
        var seconds = reported.Sum(w => w.End - w.Start);
        var errors = all.Where(s => s.Error is not null).GroupBy(s => s.Error!).ToDictionary(g => g.Key, g => (long)g.Count(), StringComparer.Ordinal);
        var spread = Statistics.Spread(reported.Select(w => w.Throughput).ToList());
        var rps = ok.Count / seconds;
        var point = new LoadPoint(concurrency, rate, rps, rps * _options.BatchSize, ok.Count, errors.Values.Sum(), errors, Statistics.Summarize(ok), IsStable(windows), spread * 100, windows.Count, seconds);
        var cpu = cpuAtWindow[windows.Count] - cpuAtWindow[windows.Count - reported.Count];
        return WithClientCost(point, cpu.TotalSeconds, all.Count, Environment.ProcessorCount);
    }

    /// <summary>CPU time of this whole process so far (the load generator's threads, user and kernel).</summary>
    private static TimeSpan ProcessCpu()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    /// <summary>perf_analyzer's rule (shared with bench): the last windows agree on throughput and on p50 latency.</summary>
    private bool IsStable(List<WindowStats> windows) =>
        windows.Count >= _options.StableWindows
        && windows.TakeLast(_options.StableWindows).All(w => w.P50 > 0)
        && Statistics.IsStable(windows.Select(w => w.Throughput).ToList(), _options.StabilityThreshold, _options.StableWindows)
        && Statistics.IsStable(windows.Select(w => w.P50).ToList(), _options.StabilityThreshold, _options.StableWindows);

    private static double Seconds(long origin, long timestamp) => (timestamp - origin) / (double)Stopwatch.Frequency;

    private static async Task ClosedLoopAsync(InferenceClient client, ConcurrentQueue<Sample> samples, long origin, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var start = Stopwatch.GetTimestamp();
            CallOutcome outcome;
            try
            {
                outcome = await client.InferAsync(stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }

            var end = Stopwatch.GetTimestamp();
            samples.Enqueue(new Sample(Seconds(origin, end), Seconds(start, end), outcome.Error));
        }
    }

    /// <summary>
    /// The arrival times, in seconds from the start, of a Poisson process at <paramref name="rate"/> per second:
    /// exponential gaps drawn from a seeded generator (the open loop's schedule, testable without a clock).
    /// </summary>
    public static IEnumerable<double> PoissonArrivals(double rate, int seed)
    {
        var rng = new Random(seed);
        var next = 0.0;
        while (true)
        {
            next += -Math.Log(1 - rng.NextDouble()) / rate;
            yield return next;
        }
    }

    private async Task OpenLoopAsync(InferenceClient client, double rate, ConcurrentQueue<Sample> samples, long origin, CancellationToken stop)
    {
        var arrivals = PoissonArrivals(rate, _options.Seed + 1).GetEnumerator();
        var outstanding = 0;
        var inFlight = new List<Task>();
        while (!stop.IsCancellationRequested && arrivals.MoveNext())
        {
            var next = arrivals.Current;
            var wait = next - Seconds(origin, Stopwatch.GetTimestamp());
            if (wait > 0.001)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(wait), stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            var scheduled = next;
            if (Interlocked.Increment(ref outstanding) > _options.MaxOutstanding)
            {
                Interlocked.Decrement(ref outstanding);
                samples.Enqueue(new Sample(Seconds(origin, Stopwatch.GetTimestamp()), 0, "client_overflow"));
                continue;
            }

            inFlight.Add(Task.Run(
                async () =>
                {
                    try
                    {
                        var outcome = await client.InferAsync(stop).ConfigureAwait(false);
                        var end = Seconds(origin, Stopwatch.GetTimestamp());
                        samples.Enqueue(new Sample(end, end - scheduled, outcome.Error));
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                        // Cut off at the end of the point.
                    }
                    finally
                    {
                        Interlocked.Decrement(ref outstanding);
                    }
                },
                CancellationToken.None));
            if (inFlight.Count > 4096)
            {
                inFlight.RemoveAll(t => t.IsCompleted);
            }
        }

        await Task.WhenAll(inFlight).ConfigureAwait(false);
    }

    private readonly record struct Sample(double End, double LatencySeconds, string? Error);

    private sealed class WindowStats(double start, double end, List<Sample> samples)
    {
        public double Start { get; } = start;

        public double End { get; } = end;

        public List<Sample> Samples { get; } = samples;

        public double Throughput => Samples.Count(s => s.Error is null) / (End - Start);

        public double P50
        {
            get
            {
                var ok = Samples.Where(s => s.Error is null).Select(s => s.LatencySeconds).Order().ToList();
                return ok.Count == 0 ? 0 : Statistics.PercentileOfSorted(ok, 50);
            }
        }
    }
}
