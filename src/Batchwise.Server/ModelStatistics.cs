using System.Collections.Concurrent;
using System.Diagnostics;
using Batchwise.Batching;

namespace Batchwise.Server;

/// <summary>A count and a total duration (Triton's StatisticDuration).</summary>
public readonly record struct DurationTotal(long Count, long Nanoseconds);

/// <summary>Totals for one executed batch size (Triton's InferBatchStatistics).</summary>
public sealed record BatchSizeStatistics(int BatchSize, DurationTotal ComputeInput, DurationTotal ComputeInfer, DurationTotal ComputeOutput);

/// <summary>A model version's cumulative statistics at one moment (Triton's ModelStatistics).</summary>
public sealed record ModelStatisticsSnapshot(
    string Name,
    string Version,
    long LastInferenceMs,
    long InferenceCount,
    long ExecutionCount,
    DurationTotal Success,
    DurationTotal Fail,
    DurationTotal Queue,
    DurationTotal ComputeInput,
    DurationTotal ComputeInfer,
    DurationTotal ComputeOutput,
    IReadOnlyList<BatchSizeStatistics> BatchStats);

/// <summary>
/// Where a request's time went, measured where it is spent: <c>compute_input</c> is the protocol front end decoding the
/// request's tensors (bytes to the pinned tensors the engine reads), <c>queue</c> the wait in the dynamic batcher,
/// <c>compute_infer</c> the batch execution it ran in (merge along axis 0, engine run, split back), <c>compute_output</c>
/// encoding its outputs into the response; <c>success</c>/<c>fail</c> span arrival to the last response byte.
/// </summary>
public sealed class RequestTimer
{
    private readonly ModelStatistics _statistics;
    private readonly long _received;
    private long _decoded;
    private long _computed;
    private long _rows;
    private int _executedBatchSize;
    private BatchedResult? _result;
    private int _finished;
    private RequestTrace? _trace;

    internal RequestTimer(ModelStatistics statistics, long received)
    {
        _statistics = statistics;
        _received = received;
    }

    /// <summary>Traces this request when <paramref name="tracing"/> samples it (W3C <paramref name="traceParent"/>: the caller's span, if any).</summary>
    public void TraceWith(RequestTracing? tracing, string protocol, string? traceParent)
    {
        if (tracing is not null && tracing.Sample(_statistics.Name))
        {
            _trace = new RequestTrace(tracing, _statistics.Name, _statistics.Version, protocol, traceParent);
        }
    }

    /// <summary>The client's request id, for the trace.</summary>
    public void Identify(string? requestId)
    {
        if (_trace is not null)
        {
            _trace.RequestId = requestId;
        }
    }

    /// <summary>The request's tensors are decoded and valid.</summary>
    public void InputsDecoded() => _decoded = Stopwatch.GetTimestamp();

    /// <summary>The batcher answered a request of <paramref name="rows"/> inferences that ran in a batch of <paramref name="executedBatchSize"/> rows.</summary>
    public void Computed(BatchedResult result, long rows, int executedBatchSize)
    {
        _result = result;
        _rows = rows;
        _executedBatchSize = executedBatchSize;
        _computed = Stopwatch.GetTimestamp();
    }

    /// <summary>The response is written; records a success.</summary>
    public void Succeeded()
    {
        if (Interlocked.Exchange(ref _finished, 1) != 0 || _result is null)
        {
            return;
        }

        var now = Stopwatch.GetTimestamp();
        var decoded = _decoded == 0 ? _received : _decoded;
        _statistics.RecordSuccess(Elapsed(_received, now), Elapsed(_received, decoded), _result, _rows, _executedBatchSize, Elapsed(_computed, now));
        _trace?.Tracing.Record(_trace, _received, decoded, _computed, now, _result, null);
    }

    /// <summary>The request failed for <paramref name="reason"/> (invalid, queue_full, timeout, cancelled, shutting_down, internal); records it once.</summary>
    public void Failed(string reason)
    {
        if (Interlocked.Exchange(ref _finished, 1) == 0)
        {
            var now = Stopwatch.GetTimestamp();
            _statistics.RecordFailure(Elapsed(_received, now), reason);
            _trace?.Tracing.Record(_trace, _received, _decoded == 0 ? now : _decoded, _computed, now, _computed == 0 ? null : _result, reason);
        }
    }

    private static long Elapsed(long from, long to) => (long)((to - from) * (1e9 / Stopwatch.Frequency));
}

/// <summary>One served model version's cumulative statistics, in Triton's schema; updated lock-free on the hot path.</summary>
public sealed class ModelStatistics
{
    private readonly ConcurrentDictionary<int, BatchTotals> _batches = new();
    private long _lastInferenceMs;
    private long _inferenceCount;
    private long _executionCount;
    private readonly Total _success = new();
    private readonly Total _fail = new();
    private readonly Total _queue = new();
    private readonly Total _computeInput = new();
    private readonly Total _computeInfer = new();
    private readonly Total _computeOutput = new();

    /// <summary>Creates empty statistics for a model version.</summary>
    public ModelStatistics(string name, string version, ServerMetrics? metrics = null)
    {
        Name = name;
        Version = version;
        Metrics = metrics;
    }

    /// <summary>The model's name.</summary>
    public string Name { get; }

    /// <summary>The model's version.</summary>
    public string Version { get; }

    /// <summary>Where the same numbers go as Prometheus metrics (null: nowhere).</summary>
    internal ServerMetrics? Metrics { get; }

    /// <summary>Starts timing a request that has just arrived.</summary>
    public RequestTimer Start() => new(this, Stopwatch.GetTimestamp());

    /// <summary>Starts timing a request that arrived at <paramref name="receivedTimestamp"/> (Stopwatch ticks).</summary>
    public RequestTimer Start(long receivedTimestamp) => new(this, receivedTimestamp);

    /// <summary>Records one batch execution of <paramref name="batchSize"/> rows and its engine time.</summary>
    public void RecordExecution(int batchSize, TimeSpan engineTime)
    {
        Interlocked.Increment(ref _executionCount);
        var totals = _batches.GetOrAdd(batchSize, _ => new BatchTotals());
        Interlocked.Increment(ref totals.Executions);
        Interlocked.Add(ref totals.InferNs, (long)(engineTime.TotalMilliseconds * 1e6));
        Metrics?.RecordExecution(Name, Version);
    }

    /// <summary>A snapshot of every total.</summary>
    public ModelStatisticsSnapshot Snapshot() => new(
        Name,
        Version,
        Interlocked.Read(ref _lastInferenceMs),
        Interlocked.Read(ref _inferenceCount),
        Interlocked.Read(ref _executionCount),
        _success.Read(),
        _fail.Read(),
        _queue.Read(),
        _computeInput.Read(),
        _computeInfer.Read(),
        _computeOutput.Read(),
        _batches.OrderBy(b => b.Key).Select(b =>
        {
            var n = Interlocked.Read(ref b.Value.Executions);
            return new BatchSizeStatistics(
                b.Key,
                new DurationTotal(n, Interlocked.Read(ref b.Value.InputNs)),
                new DurationTotal(n, Interlocked.Read(ref b.Value.InferNs)),
                new DurationTotal(n, Interlocked.Read(ref b.Value.OutputNs)));
        }).ToList());

    internal void RecordSuccess(long totalNs, long inputNs, BatchedResult result, long rows, int executedBatchSize, long outputNs)
    {
        var queueNs = (long)(result.QueueTime.TotalMilliseconds * 1e6);
        var inferNs = (long)(result.ComputeTime.TotalMilliseconds * 1e6);
        _success.Add(totalNs);
        _queue.Add(queueNs);
        _computeInput.Add(inputNs);
        _computeInfer.Add(inferNs);
        _computeOutput.Add(outputNs);
        Interlocked.Add(ref _inferenceCount, rows);
        Interlocked.Exchange(ref _lastInferenceMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

        // A batch size's input and output preparation is the sum over the requests that ran at that size.
        var totals = _batches.GetOrAdd(executedBatchSize, _ => new BatchTotals());
        Interlocked.Add(ref totals.InputNs, inputNs);
        Interlocked.Add(ref totals.OutputNs, outputNs);
        Metrics?.RecordSuccess(Name, Version, totalNs, queueNs, inputNs, inferNs, outputNs, rows);
    }

    internal void RecordFailure(long totalNs, string reason)
    {
        _fail.Add(totalNs);
        Metrics?.RecordFailure(Name, Version, totalNs, reason);
    }

    private sealed class BatchTotals
    {
        public long Executions;
        public long InputNs;
        public long InferNs;
        public long OutputNs;
    }

    private sealed class Total
    {
        private long _count;
        private long _ns;

        public void Add(long ns)
        {
            Interlocked.Increment(ref _count);
            Interlocked.Add(ref _ns, ns);
        }

        public DurationTotal Read() => new(Interlocked.Read(ref _count), Interlocked.Read(ref _ns));
    }
}
