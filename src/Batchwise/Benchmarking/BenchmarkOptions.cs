using Batchwise.Engines;

namespace Batchwise.Benchmarking;

/// <summary>What a benchmark sweep measures and how long it may take.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>Batch sizes to measure; null = powers of two from 1 up to <see cref="MaxBatchSize"/>.</summary>
    public IReadOnlyList<int>? BatchSizes { get; init; }

    /// <summary>Largest batch size of the default sweep.</summary>
    public int MaxBatchSize { get; init; } = 256;

    /// <summary>Runs in flight at once, each from its own thread; every value is one more point per batch size.</summary>
    public IReadOnlyList<int> Concurrency { get; init; } = [1];

    /// <summary>Measurement time of one stable point: three windows of a third of it each.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Warm-up before measuring each point (every thread runs at least once, whatever this is).</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Time budget for the whole sweep: no new point starts after it (the first always runs); null = none.</summary>
    public TimeSpan? MaxTime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Seed of the random inputs.</summary>
    public int Seed { get; init; }

    /// <summary>A point is stable when its last three windows' throughputs each lie within this fraction of their mean.</summary>
    public double StabilityTolerance { get; init; } = 0.1;

    /// <summary>Windows measured at most before a point is reported unstable.</summary>
    public int MaxWindows { get; init; } = 10;

    /// <summary>
    /// Runs each worker enqueues back to back before it waits (1: it waits for every run). Above 1 the engine must queue
    /// runs on its device (<see cref="IQueuedRuns"/>): the device then never idles for the host between them, as a
    /// CUDA-graph replay loop is timed, and a latency sample is a queue's mean run.
    /// </summary>
    public int Queue { get; init; } = 1;

    /// <summary>The largest <see cref="Queue"/> taken.</summary>
    public const int MaxQueue = 10_000;

    /// <summary>Sizes of dynamic dimensions other than the batch.</summary>
    public ShapeBindings Shapes { get; init; } = ShapeBindings.None;

    /// <summary>Real input data by input name (from .npy files); other inputs are random.</summary>
    public IReadOnlyDictionary<string, Tensor> Data { get; init; } = new Dictionary<string, Tensor>();

    /// <summary>Length of one measurement window.</summary>
    public TimeSpan Window => Duration / 3;

    /// <summary>Checks the options and explains the first bad one.</summary>
    public void Validate()
    {
        if (BatchSizes is { } sizes && (sizes.Count == 0 || sizes.Any(b => b <= 0)))
        {
            throw new BatchwiseException("Batch sizes must be positive integers", "Write e.g. --batch-sizes 1,2,4,8.");
        }

        if (MaxBatchSize <= 0)
        {
            throw new BatchwiseException($"The largest batch size must be positive, not {MaxBatchSize}", "Write e.g. --max-batch-size 256.");
        }

        if (Concurrency.Count == 0 || Concurrency.Any(c => c <= 0 || c > 1024))
        {
            throw new BatchwiseException("Concurrency values must be integers from 1 to 1024", "Write e.g. --concurrency 1,2,4.");
        }

        if (Duration <= TimeSpan.Zero)
        {
            throw new BatchwiseException($"--duration must be positive, not {Duration.TotalSeconds} s", "Write e.g. --duration 3 (seconds per point).");
        }

        if (Warmup < TimeSpan.Zero)
        {
            throw new BatchwiseException("--warmup cannot be negative", "Write e.g. --warmup 1 (seconds), or 0 for one run per thread.");
        }

        if (MaxTime is { } t && t <= TimeSpan.Zero)
        {
            throw new BatchwiseException("--max-time must be positive", "Write e.g. --max-time 600 (seconds for the whole sweep).");
        }

        if (StabilityTolerance is <= 0 or >= 1 || double.IsNaN(StabilityTolerance))
        {
            throw new BatchwiseException($"--stability-tolerance must lie between 0 and 1 (exclusive), not {StabilityTolerance}", "Write e.g. --stability-tolerance 0.1 for 10%.");
        }

        if (Queue is < 1 or > MaxQueue)
        {
            throw new BatchwiseException($"--queue must be a whole number from 1 to {MaxQueue}, not {Queue}", "Write e.g. --queue 20 (runs enqueued back to back before waiting), or leave it out to wait for every run.");
        }

        if (MaxWindows < 3)
        {
            throw new BatchwiseException($"--max-windows must be at least 3 (stability compares three windows), not {MaxWindows}", "Write e.g. --max-windows 10.");
        }
    }

    /// <summary>The batch sizes the sweep tries, in order.</summary>
    public IReadOnlyList<int> PlannedBatchSizes()
    {
        if (BatchSizes is { } sizes)
        {
            return sizes.Distinct().Order().ToList();
        }

        var result = new List<int>();
        for (var b = 1; b <= MaxBatchSize; b *= 2)
        {
            result.Add(b);
        }

        return result;
    }
}
