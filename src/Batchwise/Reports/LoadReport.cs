using Batchwise.Benchmarking;

namespace Batchwise.Reports;

/// <summary>One measured point of a sweep.</summary>
/// <param name="Concurrency">Clients (closed loop), or null.</param>
/// <param name="RequestRate">Offered requests per second (open loop), or null.</param>
/// <param name="RequestsPerSecond">Successful requests per second over the reported windows.</param>
/// <param name="InferencesPerSecond">Successful samples per second (requests x batch size).</param>
/// <param name="Requests">Successful requests in the reported windows.</param>
/// <param name="Errors">Failed requests in the reported windows.</param>
/// <param name="ErrorKinds">Failures by kind (http_503, grpc_Unavailable, client_overflow, ...).</param>
/// <param name="Latency">Latency of successful requests, in milliseconds.</param>
/// <param name="Stable">True when the last windows agree within the threshold.</param>
/// <param name="ThroughputSpreadPercent">(max-min)/mean of the windows' throughput, in percent.</param>
/// <param name="WindowsMeasured">Windows measured in all (warm-up excluded).</param>
/// <param name="SecondsMeasured">Length of the reported windows.</param>
public sealed record LoadPoint(int? Concurrency, double? RequestRate, double RequestsPerSecond, double InferencesPerSecond, long Requests, long Errors, IReadOnlyDictionary<string, long> ErrorKinds, LatencyPercentiles Latency, bool Stable, double ThroughputSpreadPercent, int WindowsMeasured, double SecondsMeasured)
{
    /// <summary>The load generator's own CPU time (every thread of its process) per request sent, in milliseconds, over the reported windows.</summary>
    public double ClientCpuMillisecondsPerRequest { get; init; }

    /// <summary>Cores the load generator kept busy on average over the reported windows (its CPU time / wall time).</summary>
    public double ClientCoresBusy { get; init; }

    /// <summary>
    /// The load generator's own ceiling: requests per second it could send with every core of its host to itself, at
    /// the CPU time it spent per request (0 when it measured none).
    /// </summary>
    public double ClientCeilingRequestsPerSecond { get; init; }

    /// <summary>
    /// True when the load generator, not the server, may be what limits the point: it kept at least half of its host's
    /// cores busy (a server on the same host had the rest; it ran at half its own ceiling or more).
    /// </summary>
    public bool ClientBound { get; init; }
}

/// <summary>`batchwise load --json`: a whole sweep with its context, schema batchwise.load (docs/report-schemas.md).</summary>
/// <param name="Url">The server loaded.</param>
/// <param name="Model">The model on the server.</param>
/// <param name="Protocol">http or grpc.</param>
/// <param name="BatchSize">Batch size of each request.</param>
/// <param name="Inputs">The inputs sent (name, type, shape).</param>
/// <param name="Date">When it ran (UTC, ISO 8601).</param>
/// <param name="Machine">The client's host name.</param>
/// <param name="Cpu">The client's CPU.</param>
/// <param name="Cores">The client's logical cores.</param>
/// <param name="Points">One point per concurrency or request rate.</param>
public sealed record LoadReport(string Url, string Model, string Protocol, int BatchSize, string Inputs, string Date, string Machine, string Cpu, int Cores, IReadOnlyList<LoadPoint> Points) : VersionedDocument("batchwise.load", 1)
{
    /// <summary>The CSV columns: one row per point.</summary>
    public static readonly IReadOnlyList<string> CsvColumns =
    [
        "model", "protocol", "batch_size", "concurrency", "request_rate", "requests_per_second", "inferences_per_second",
        "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "requests", "errors", "stable", "throughput_spread_percent",
        "client_cpu_ms_per_request", "client_cores_busy", "client_ceiling_requests_per_second", "client_bound",
    ];

    /// <summary>The report as CSV, one row per point.</summary>
    public string ToCsv() => Csv.Write(CsvColumns, Points.Select(p => (IReadOnlyList<object?>)
    [
        Model, Protocol, BatchSize, p.Concurrency, p.RequestRate, p.RequestsPerSecond, p.InferencesPerSecond,
        p.Latency.P50, p.Latency.P90, p.Latency.P95, p.Latency.P99, p.Latency.Mean, p.Latency.Max, p.Requests, p.Errors, p.Stable, p.ThroughputSpreadPercent,
        p.ClientCpuMillisecondsPerRequest, p.ClientCoresBusy, p.ClientCeilingRequestsPerSecond, p.ClientBound,
    ]));
}
