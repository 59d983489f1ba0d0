using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>One measured point of a sweep: a batch size at a concurrency.</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="Concurrency">Runs in flight at once (threads).</param>
/// <param name="InputShapes">Concrete input shapes, in model input order.</param>
/// <param name="Stable">True when the last three windows agreed within the tolerance.</param>
/// <param name="Spread">(max - min) / mean of the last three windows' throughputs.</param>
/// <param name="WindowThroughputs">Samples/s of every measurement window, in order.</param>
/// <param name="Throughput">Samples/s over the last three windows.</param>
/// <param name="BatchesPerSecond">Runs/s over the last three windows.</param>
/// <param name="TimePerSampleMs">Wall time per sample (1000 / throughput), ms.</param>
/// <param name="LatencyMs">Batch latency statistics over the last three windows, ms.</param>
/// <param name="CpuUtilization">Process CPU time / (wall time x logical cores), 0-1.</param>
/// <param name="PeakWorkingSetBytes">Largest process working set seen while measuring.</param>
/// <param name="DeviceUtilizationPercent">Mean device utilisation, where the engine reports one.</param>
/// <param name="DeviceMemoryUsedBytes">Largest device memory use, where the engine reports one.</param>
/// <param name="WarmupRuns">Runs made during warm-up (all threads).</param>
/// <param name="MeasuredSeconds">Wall time of the last three windows.</param>
/// <param name="LatencySamplesMs">Every batch latency of the last three windows, ms, in completion order per thread.</param>
public sealed record BenchmarkPoint(
    int BatchSize,
    int Concurrency,
    IReadOnlyList<long[]> InputShapes,
    bool Stable,
    double Spread,
    IReadOnlyList<double> WindowThroughputs,
    double Throughput,
    double BatchesPerSecond,
    double TimePerSampleMs,
    LatencyPercentiles LatencyMs,
    double CpuUtilization,
    long PeakWorkingSetBytes,
    double? DeviceUtilizationPercent,
    long? DeviceMemoryUsedBytes,
    int WarmupRuns,
    double MeasuredSeconds,
    IReadOnlyList<double> LatencySamplesMs)
{
    /// <summary>With --transfers on an engine that reports it: the latency split into H2D, compute and D2H; otherwise null.</summary>
    public TransferBreakdown? Transfers { get; init; }

    /// <summary>Plans the engine built to run this point (engines that build plans per shape); empty when every plan existed.</summary>
    public IReadOnlyList<PlanBuild> PlanBuilds { get; init; } = [];

    /// <summary>The batch this point ran padded to (a batch profile), or null when it ran at its own size.</summary>
    public int? PaddedTo { get; init; }

    /// <summary>The device's clock and power over the measurement, where the engine reports them (a GPU through NVML); otherwise null.</summary>
    public DeviceClocks? DeviceClocks { get; init; }
}

/// <summary>
/// A GPU's clock and power over a point's measurement, sampled with its utilisation: a rate measured at a lower clock
/// than another (a sustained tensor-core load held at the power cap, a warm card) is not the same device's speed.
/// </summary>
/// <param name="SmClockMhz">Mean SM clock, MHz.</param>
/// <param name="PowerWatts">Mean power draw, W, where reported.</param>
/// <param name="Limits">Each reason that held the clocks below their maximum in some samples (<see cref="DeviceClockLimit"/>), with its share of the samples, 0-1.</param>
/// <param name="Samples">Samples taken.</param>
public sealed record DeviceClocks(double SmClockMhz, double? PowerWatts, IReadOnlyDictionary<string, double> Limits, int Samples)
{
    /// <summary>The limits that slowed the device (<see cref="DeviceClockLimit.Slowing"/>: power, thermal) in a tenth of the samples or more, the most frequent first.</summary>
    public IReadOnlyList<string> SlowedBy() =>
        [.. Limits.Where(l => l.Value >= 0.1 && DeviceClockLimit.Slowing.Contains(l.Key)).OrderByDescending(l => l.Value).Select(l => l.Key)];
}

/// <summary>How long the first inference took from nothing: loading the model on the engine, its first plan, its first run.</summary>
/// <param name="LoadSeconds">Loading the model into a session (weights read and converted, device set up).</param>
/// <param name="FirstInferenceSeconds">Reading the model file, the engine's environment (driver, libraries), loading, the first plan and the first run, outputs read back.</param>
public sealed record ColdStart(double LoadSeconds, double FirstInferenceSeconds)
{
    /// <summary>Reading the model file (or saved engine) and parsing it, before loading; included in <see cref="FirstInferenceSeconds"/>.</summary>
    public double ReadSeconds { get; init; }

    /// <summary>Preparing the first run: its plan (where the engine builds one per shape) and its inputs.</summary>
    public double PrepareSeconds { get; init; }

    /// <summary>The first run itself, outputs read back (first use of execution resources: memory, library handles, graph capture).</summary>
    public double FirstRunSeconds { get; init; }

    /// <summary>The plan built for the first run, with its phases, where the engine builds plans.</summary>
    public PlanBuild? FirstPlan { get; init; }

    /// <summary>
    /// Finer spans, seconds by name in the order they began: read_* (the file: open, hash, parse), environment (the
    /// engine's description: driver initialisation, libraries opened; on another thread while the session loads), load_* (device context, saved
    /// artefacts, session), plan_* and first_run_* where the engine reports them; spans named after_* happened after the
    /// first inference (the second run's CUDA graph capture) and are not part of it.
    /// </summary>
    public IReadOnlyDictionary<string, double> Spans { get; init; } = new Dictionary<string, double>();
}

/// <summary>How the batch latency of a point splits into its phases (the same runs as the latency statistics), ms.</summary>
/// <param name="HostToDeviceMs">Copying the inputs to the device.</param>
/// <param name="ComputeMs">The model itself.</param>
/// <param name="DeviceToHostMs">Copying the outputs back.</param>
public sealed record TransferBreakdown(LatencyPercentiles HostToDeviceMs, LatencyPercentiles ComputeMs, LatencyPercentiles DeviceToHostMs);

/// <summary>The model a sweep measured.</summary>
/// <param name="Name">Short name.</param>
/// <param name="Source">As given: a path or zoo:NAME.</param>
/// <param name="Sha256">SHA-256 of the file (or of the serialized model when built in memory).</param>
/// <param name="Inputs">Declared inputs.</param>
/// <param name="BatchAxis">Where the batch axis is, or why there is none.</param>
/// <param name="InputData">How each input was filled.</param>
public sealed record ModelInfo(string Name, string Source, string Sha256, IReadOnlyList<TensorSpec> Inputs, BatchAxis BatchAxis, IReadOnlyDictionary<string, string> InputData);

/// <summary>Where and when a sweep ran: recorded with every result.</summary>
/// <param name="DateUtc">Start time (UTC).</param>
/// <param name="BatchwiseVersion">Batchwise's version.</param>
/// <param name="MachineName">Host name.</param>
/// <param name="Cpu">CPU model.</param>
/// <param name="LogicalCores">Logical processors available.</param>
/// <param name="OperatingSystem">OS description.</param>
/// <param name="Runtime">.NET runtime.</param>
/// <param name="Engine">The engine's own description.</param>
/// <param name="EngineOptions">Options the engine was loaded with.</param>
/// <param name="Model">The model.</param>
/// <param name="Options">The sweep's options.</param>
public sealed record BenchmarkContext(
    DateTimeOffset DateUtc,
    string BatchwiseVersion,
    string MachineName,
    string Cpu,
    int LogicalCores,
    string OperatingSystem,
    string Runtime,
    EngineDescription Engine,
    EngineOptions EngineOptions,
    ModelInfo Model,
    BenchmarkOptions Options);

/// <summary>Why a sweep ended before its plan was done.</summary>
public enum StopReason
{
    /// <summary>Every planned point was measured.</summary>
    Completed,

    /// <summary>The user pressed Ctrl+C.</summary>
    Cancelled,

    /// <summary>The time budget (--max-time) ran out.</summary>
    TimeBudget,

    /// <summary>A batch size failed (out of memory, or the engine refused it).</summary>
    BatchFailed,
}

/// <summary>The outcome of a sweep: context, points, knees and notes.</summary>
/// <param name="Context">Where and when it ran.</param>
/// <param name="Points">Measured points, in measurement order.</param>
/// <param name="Knees">One knee per concurrency (over the batch sizes measured at it).</param>
/// <param name="Notes">Plain-words notes (fixed batch, where and why the sweep stopped).</param>
/// <param name="StopReason">Why the sweep ended.</param>
/// <param name="TotalSeconds">Wall time of the whole sweep, loading included.</param>
public sealed record BenchmarkResult(
    BenchmarkContext Context,
    IReadOnlyList<BenchmarkPoint> Points,
    IReadOnlyList<KneeResult> Knees,
    IReadOnlyList<string> Notes,
    StopReason StopReason,
    double TotalSeconds)
{
    /// <summary>Time to first inference, measured before the sweep.</summary>
    public ColdStart? ColdStart { get; init; }
}

/// <summary>Where a sweep is, for a live progress display.</summary>
/// <param name="PointIndex">Zero-based index of the current point.</param>
/// <param name="PointCount">Points planned.</param>
/// <param name="BatchSize">Current batch size.</param>
/// <param name="Concurrency">Current concurrency.</param>
/// <param name="Phase">"warm-up", "window N", or "done".</param>
/// <param name="SoFar">When Phase is "done": the sweep so far (the finished point is the last), to show or save.</param>
public sealed record BenchmarkProgress(int PointIndex, int PointCount, int BatchSize, int Concurrency, string Phase, BenchmarkResult? SoFar);
