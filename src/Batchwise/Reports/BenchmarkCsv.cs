using System.Globalization;
using System.Text;
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
        "h2d_mean_ms", "compute_mean_ms", "d2h_mean_ms",
    ];

    /// <summary>Writes the CSV to a file.</summary>
    public static void Write(BenchmarkResult result, string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var text = ToCsv(result);
        ReportFile.Write(path, stream =>
        {
            var bytes = new UTF8Encoding(false).GetBytes(text);
            stream.Write(bytes);
        });
    }

    /// <summary>The CSV text: a header row, then one row per point.</summary>
    public static string ToCsv(BenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var c = result.Context;
        var sb = new StringBuilder();
        sb.AppendLine(string.Join(',', Columns));
        foreach (var p in result.Points)
        {
            var l = p.LatencyMs;
            object?[] row =
            [
                BenchmarkJson.SchemaVersion, c.DateUtc.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture),
                c.Model.Source, c.Model.Sha256, c.Engine.Engine, c.Engine.Version, c.Engine.Device,
                p.BatchSize, p.Concurrency, p.Stable ? "true" : "false", p.Spread, p.WindowThroughputs.Count,
                p.Throughput, p.BatchesPerSecond, p.TimePerSampleMs,
                l.Mean, l.StdDev, l.Ci95, l.Min, l.P50, l.P90, l.P95, l.P99, l.Max, l.Count,
                p.CpuUtilization, p.PeakWorkingSetBytes, p.DeviceUtilizationPercent, p.DeviceMemoryUsedBytes,
                p.Transfers?.HostToDeviceMs.Mean, p.Transfers?.ComputeMs.Mean, p.Transfers?.DeviceToHostMs.Mean,
            ];
            sb.AppendLine(string.Join(',', row.Select(Field)));
        }

        return sb.ToString();
    }

    private static string Field(object? value)
    {
        var text = value switch
        {
            null => string.Empty,
            double d => d.ToString("G6", CultureInfo.InvariantCulture),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? string.Empty,
        };

        // RFC 4180: quote fields holding a comma, quote or line break.
        return text.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : text;
    }
}
