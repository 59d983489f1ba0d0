using System.Diagnostics;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Analysis;

/// <summary>One measured batch size: what explain sets beside its prediction.</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="Throughput">Samples per second.</param>
/// <param name="LatencyMedianSeconds">Median run latency.</param>
/// <param name="LatencyP90Seconds">90th-percentile run latency.</param>
/// <param name="Runs">Runs measured.</param>
public sealed record MeasuredPoint(int BatchSize, double Throughput, double LatencyMedianSeconds, double LatencyP90Seconds, int Runs);

/// <summary>
/// A short measured sweep for explain when no bench result is given: per batch size, two warm-up runs,
/// then runs until the time budget is spent (at least three); throughput from the median latency.
/// </summary>
public static class MeasuredSweep
{
    /// <summary>Measures each batch size for about <paramref name="secondsPerBatch"/> seconds.</summary>
    public static IReadOnlyList<MeasuredPoint> Run(
        IEngine engine, EngineOptions options, OnnxModel model, IReadOnlyList<int> batchSizes, InputSize? size, double secondsPerBatch, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(batchSizes);
        using var session = engine.Load(model, options);
        var points = new List<MeasuredPoint>();
        foreach (var b in batchSizes)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var run = session.Prepare(InputShapes.Zeros(model, b, size));
            run.Run();
            run.Run();
            var samples = new List<double>();
            var start = Stopwatch.GetTimestamp();
            while (samples.Count < 3 || Stopwatch.GetElapsedTime(start).TotalSeconds < secondsPerBatch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                samples.Add(run.Run());
            }

            samples.Sort();
            var median = Percentile(samples, 0.5);
            var point = new MeasuredPoint(b, b / median, median, Percentile(samples, 0.9), samples.Count);
            log?.Invoke($"b={b}: {point.Throughput:N1}/s, median {median * 1e3:N2} ms over {samples.Count} runs");
            points.Add(point);
        }

        return points;
    }

    /// <summary>The host's 1-minute load average (from /proc/loadavg), or null where unknown.</summary>
    public static double? LoadAverage()
    {
        try
        {
            var text = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg") : null;
            return text is not null && double.TryParse(text.Split(' ')[0], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Linear-interpolated percentile of sorted samples.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        var pos = q * (sorted.Count - 1);
        var lo = (int)Math.Floor(pos);
        var hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + ((sorted[hi] - sorted[lo]) * (pos - lo));
    }
}
