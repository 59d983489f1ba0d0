using System.Globalization;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Analysis;

/// <summary>One measured batch size: what explain sets beside its prediction.</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="Throughput">Samples per second.</param>
/// <param name="LatencyMedianSeconds">Median run latency.</param>
/// <param name="LatencyP90Seconds">90th-percentile run latency.</param>
/// <param name="Runs">Runs measured.</param>
/// <param name="LatencyMinSeconds">The fastest run (what the device does when nothing else competes for it); NaN where unknown.</param>
public sealed record MeasuredPoint(int BatchSize, double Throughput, double LatencyMedianSeconds, double LatencyP90Seconds, int Runs, double LatencyMinSeconds = double.NaN)
{
    /// <summary>Samples per second of the fastest run; NaN where unknown.</summary>
    public double BestRunThroughput => BatchSize / LatencyMinSeconds;

    /// <summary>The device's clock and power while it was measured (a GPU through NVML), where known.</summary>
    public DeviceClocks? Clocks { get; init; }
}

/// <summary>The measured side of explain: a short sweep through the bench runner, or the points of a bench result.</summary>
public static class MeasuredSweep
{
    /// <summary>
    /// A short sweep with <see cref="BenchmarkRunner"/> at concurrency 1: about <paramref name="secondsPerBatch"/>
    /// of measurement (three windows) per batch size after a warm-up of a third of that; unstable points are kept
    /// (explain wants the shape of the curve, and says when the host was busy).
    /// </summary>
    public static IReadOnlyList<MeasuredPoint> Run(
        IEngine engine, EngineOptions options, OnnxModel model, string source, IReadOnlyList<int> batchSizes, InputSize? size, double secondsPerBatch, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        var bench = new BenchmarkOptions
        {
            BatchSizes = batchSizes,
            Duration = TimeSpan.FromSeconds(secondsPerBatch),
            Warmup = TimeSpan.FromSeconds(Math.Min(1, secondsPerBatch / 3)),
            MaxWindows = 3,
            MaxTime = null,
            Shapes = size is null ? ShapeBindings.None : InputShapes.Bindings(model, size),
        };
        bench.Validate();
        var result = new BenchmarkRunner(engine, options).Run(model, source, bench, p =>
        {
            if (p.SoFar is { } soFar && log is not null)
            {
                var point = soFar.Points[^1];
                log(string.Create(CultureInfo.InvariantCulture, $"b={point.BatchSize}: {Units.Rate(point.Throughput)}/s, median {Units.Duration(point.LatencyMs.P50 / 1e3)}{(point.Stable ? string.Empty : $" (unstable, spread {point.Spread:P0})")}"));
            }
        }, cancellationToken);
        if (result.StopReason == StopReason.Cancelled)
        {
            throw new OperationCanceledException(cancellationToken);
        }

        var points = FromBench(result);
        return points.Count > 0 ? points : throw new BatchwiseException($"The sweep of '{model.Name}' measured nothing ({string.Join("; ", result.Notes)})", "Try smaller --batch-sizes or a longer --duration.");
    }

    /// <summary>The points of a bench result at its lowest concurrency, one per batch size.</summary>
    public static IReadOnlyList<MeasuredPoint> FromBench(BenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return AtLowestConcurrency(result.Points.Select(p => (p.Concurrency, new MeasuredPoint(p.BatchSize, p.Throughput, p.LatencyMs.P50 / 1e3, p.LatencyMs.P90 / 1e3, p.LatencyMs.Count, p.LatencyMs.Min / 1e3) { Clocks = p.DeviceClocks })));
    }

    /// <summary>Of points measured at several concurrencies, those at the lowest, one per batch size (the last measured), by batch size.</summary>
    public static IReadOnlyList<MeasuredPoint> AtLowestConcurrency(IEnumerable<(int Concurrency, MeasuredPoint Point)> points)
    {
        var all = points.ToList();
        if (all.Count == 0)
        {
            return [];
        }

        var lowest = all.Min(p => p.Concurrency);
        return all.Where(p => p.Concurrency == lowest).Select(p => p.Point).GroupBy(p => p.BatchSize).Select(g => g.Last()).OrderBy(p => p.BatchSize).ToList();
    }

    /// <summary>The host's 1-minute load average (from /proc/loadavg), or null where unknown.</summary>
    public static double? LoadAverage()
    {
        try
        {
            var text = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg") : null;
            return text is not null && double.TryParse(text.Split(' ')[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
