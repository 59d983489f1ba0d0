using Batchwise.Benchmarking;

namespace Batchwise.Reports;

/// <summary>Writes a sweep as CSV, one row per point (docs/bench-schema.md lists the columns).</summary>
public static class BenchmarkCsv
{
    /// <summary>The columns, in order.</summary>
    public static readonly IReadOnlyList<string> Columns =
    [
        "schema_version", "date_utc", "model", "model_sha256", "engine", "engine_version", "device",
        "batch_size", "concurrency", "stable", "spread", "windows",
        "throughput_samples_per_s", "batches_per_s", "time_per_sample_ms",
        "latency_mean_ms", "latency_stddev_ms", "latency_ci95_ms", "latency_min_ms", "latency_p50_ms", "latency_p90_ms",
        "latency_p95_ms", "latency_p99_ms", "latency_max_ms", "latency_count",
        "cpu_utilization", "peak_working_set_bytes", "device_utilization_percent", "device_memory_used_bytes",
        "h2d_mean_ms", "compute_mean_ms", "d2h_mean_ms", "device_sm_clock_mhz", "device_power_w",
    ];

    /// <summary>Writes the CSV to a file.</summary>
    public static void Write(BenchmarkResult result, string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        ReportFile.WriteText(path, ToCsv(result));
    }

    /// <summary>The CSV text: a header row, then one row per point.</summary>
    public static string ToCsv(BenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var c = result.Context;
        return Csv.Write(Columns, result.Points.Select(p =>
        {
            var l = p.LatencyMs;
            return (IReadOnlyList<object?>)
            [
                BenchmarkJson.SchemaVersion, c.DateUtc,
                c.Model.Source, c.Model.Sha256, c.Engine.Engine, c.Engine.Version, c.Engine.Device,
                p.BatchSize, p.Concurrency, p.Stable, p.Spread, p.WindowThroughputs.Count,
                p.Throughput, p.BatchesPerSecond, p.TimePerSampleMs,
                l.Mean, l.StdDev, l.Ci95, l.Min, l.P50, l.P90, l.P95, l.P99, l.Max, l.Count,
                p.CpuUtilization, p.PeakWorkingSetBytes, p.DeviceUtilizationPercent, p.DeviceMemoryUsedBytes,
                p.Transfers?.HostToDeviceMs.Mean, p.Transfers?.ComputeMs.Mean, p.Transfers?.DeviceToHostMs.Mean,
                p.DeviceClocks?.SmClockMhz, p.DeviceClocks?.PowerWatts,
            ];
        }));
    }

    /// <summary>Every layer of every profiled batch size (docs/bench-schema.md): batch, order, layer, mean ms, share of the layer-by-layer total.</summary>
    public static string LayersToCsv(IEnumerable<LayerProfile> profiles)
    {
        ArgumentNullException.ThrowIfNull(profiles);
        return Csv.Write(["batch", "order", "layer", "ms", "share"], profiles.SelectMany(p => p.Layers.Select((l, i) =>
            (IReadOnlyList<object?>)[p.BatchSize, i, l.Layer, l.Milliseconds, p.TotalMilliseconds > 0 ? l.Milliseconds / p.TotalMilliseconds : 0.0])));
    }
}
