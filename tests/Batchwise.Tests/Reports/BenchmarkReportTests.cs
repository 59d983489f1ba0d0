using System.Text.Json;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Reports;
using Batchwise.Zoo;

namespace Batchwise.Tests.Reports;

public sealed class BenchmarkReportTests
{
    private static readonly Lazy<BenchmarkResult> Result = new(() =>
        new BenchmarkRunner(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 }).Run(
            ModelZoo.Build("zoo:mlp"),
            "zoo:mlp",
            new BenchmarkOptions { BatchSizes = [1, 2], Duration = TimeSpan.FromMilliseconds(60), Warmup = TimeSpan.Zero, MaxWindows = 3, Seed = 42 }));

    [Fact]
    public void Json_has_every_documented_field()
    {
        using var doc = JsonDocument.Parse(BenchmarkJson.ToJson(Result.Value));
        var root = doc.RootElement;
        Assert.Equal("batchwise.bench", root.GetProperty("schema").GetString());
        Assert.Equal(1, root.GetProperty("schema_version").GetInt32());
        Assert.True(DateTimeOffset.TryParse(root.GetProperty("date_utc").GetString(), out _));
        Assert.EndsWith("Z", root.GetProperty("date_utc").GetString(), StringComparison.Ordinal);
        foreach (var field in new[] { "name", "cpu", "logical_cores", "os", "runtime" })
        {
            Assert.True(root.GetProperty("machine").TryGetProperty(field, out _), $"machine.{field}");
        }

        var engine = root.GetProperty("engine");
        Assert.Equal("ort", engine.GetProperty("name").GetString());
        Assert.False(string.IsNullOrEmpty(engine.GetProperty("version").GetString()));
        Assert.Equal(1, engine.GetProperty("options").GetProperty("intra_op_threads").GetInt32());
        Assert.False(engine.GetProperty("options").GetProperty("include_transfers").GetBoolean());
        Assert.Equal("cpu", engine.GetProperty("details").GetProperty("execution_provider").GetString());

        var model = root.GetProperty("model");
        Assert.Equal("zoo:mlp", model.GetProperty("source").GetString());
        Assert.Equal(64, model.GetProperty("sha256").GetString()!.Length);
        Assert.True(model.GetProperty("batchable").GetBoolean());
        Assert.Equal("batch", model.GetProperty("inputs")[0].GetProperty("shape")[0].GetString());

        var options = root.GetProperty("options");
        Assert.Equal(42, options.GetProperty("seed").GetInt32());
        Assert.Equal([1, 2], options.GetProperty("batch_sizes").EnumerateArray().Select(e => e.GetInt32()));

        var points = root.GetProperty("points");
        Assert.Equal(2, points.GetArrayLength());
        foreach (var p in points.EnumerateArray())
        {
            foreach (var field in new[] { "batch_size", "concurrency", "input_shapes", "stable", "spread", "window_throughputs", "throughput_samples_per_s", "batches_per_s", "time_per_sample_ms", "cpu_utilization", "peak_working_set_bytes", "device_utilization_percent", "device_memory_used_bytes", "warmup_runs", "measured_seconds" })
            {
                Assert.True(p.TryGetProperty(field, out _), field);
            }

            var latency = p.GetProperty("latency_ms");
            foreach (var field in new[] { "count", "mean", "stddev", "ci95", "min", "p50", "p90", "p95", "p99", "max" })
            {
                Assert.True(latency.TryGetProperty(field, out _), "latency_ms." + field);
            }

            Assert.Equal(latency.GetProperty("count").GetInt32(), p.GetProperty("latency_samples_ms").GetArrayLength());
            Assert.Equal(JsonValueKind.Null, p.GetProperty("transfers_ms").ValueKind);
        }

        var knee = root.GetProperty("knees")[0];
        Assert.Equal(1, knee.GetProperty("concurrency").GetInt32());
        Assert.False(string.IsNullOrEmpty(knee.GetProperty("verdict").GetString()));
        Assert.Equal(1, knee.GetProperty("steps").GetArrayLength());
        Assert.Equal("completed", root.GetProperty("stop_reason").GetString());
        Assert.Equal(JsonValueKind.Array, root.GetProperty("notes").ValueKind);
    }

    [Fact]
    public void Csv_has_the_documented_header_and_one_row_per_point()
    {
        var lines = BenchmarkCsv.ToCsv(Result.Value).TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        // The header as docs/bench-schema.md documents it, written out here (not read from the code under test).
        Assert.Equal(
            "schema_version,date_utc,model,model_sha256,engine,engine_version,device,batch_size,concurrency,stable,spread,windows," +
            "throughput_samples_per_s,batches_per_s,time_per_sample_ms,latency_mean_ms,latency_stddev_ms,latency_ci95_ms,latency_min_ms," +
            "latency_p50_ms,latency_p90_ms,latency_p95_ms,latency_p99_ms,latency_max_ms,latency_count,cpu_utilization,peak_working_set_bytes," +
            "device_utilization_percent,device_memory_used_bytes,h2d_mean_ms,compute_mean_ms,d2h_mean_ms,device_sm_clock_mhz,device_power_w",
            lines[0]);
        Assert.StartsWith("schema_version,date_utc,model,", lines[0], StringComparison.Ordinal);
        Assert.Equal(3, lines.Length);
        var header = lines[0].Split(',');
        var row = lines[1].Split(',');
        Assert.Equal(header.Length, row.Length);
        Assert.Equal("1", row[Array.IndexOf(header, "batch_size")]);
        Assert.Equal("2", lines[2].Split(',')[Array.IndexOf(header, "batch_size")]);
    }

    [Fact]
    public void Device_clocks_are_written_to_json_and_csv_and_absent_where_not_reported()
    {
        var clocks = new DeviceClocks(1755, 690.5, new Dictionary<string, double> { ["power cap"] = 0.625 }, 16);
        var result = Result.Value with { Points = Result.Value.Points.Select(p => p with { DeviceClocks = clocks }).ToList() };

        using var doc = JsonDocument.Parse(BenchmarkJson.ToJson(result));
        var written = doc.RootElement.GetProperty("points")[0].GetProperty("device_clocks");
        Assert.Equal(1755, written.GetProperty("sm_clock_mhz").GetDouble());
        Assert.Equal(690.5, written.GetProperty("power_watts").GetDouble());
        Assert.Equal(0.625, written.GetProperty("limits").GetProperty("power cap").GetDouble());
        Assert.Equal(16, written.GetProperty("samples").GetInt32());

        var lines = BenchmarkCsv.ToCsv(result).TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        var header = lines[0].Split(',');
        Assert.Equal("1755", lines[1].Split(',')[Array.IndexOf(header, "device_sm_clock_mhz")]);
        Assert.Equal("690.5", lines[1].Split(',')[Array.IndexOf(header, "device_power_w")]);

        // ONNX Runtime on the CPU reports no device: null in the JSON, empty in the CSV.
        using var plain = JsonDocument.Parse(BenchmarkJson.ToJson(Result.Value));
        Assert.Equal(JsonValueKind.Null, plain.RootElement.GetProperty("points")[0].GetProperty("device_clocks").ValueKind);
        Assert.Equal(string.Empty, BenchmarkCsv.ToCsv(Result.Value).Split('\n')[1].TrimEnd('\r').Split(',')[Array.IndexOf(header, "device_sm_clock_mhz")]);
    }

    [Fact]
    public void Transfer_breakdown_is_written_to_json_and_csv()
    {
        var phases = new TransferBreakdown(Statistics.Summarize([0.5, 0.7]), Statistics.Summarize([2.0, 2.5]), Statistics.Summarize([0.25, 0.75]));
        var result = Result.Value with { Points = Result.Value.Points.Select(p => p with { Transfers = phases }).ToList() };

        using var doc = JsonDocument.Parse(BenchmarkJson.ToJson(result));
        var transfers = doc.RootElement.GetProperty("points")[0].GetProperty("transfers_ms");
        Assert.Equal(0.6, transfers.GetProperty("h2d").GetProperty("mean").GetDouble(), 9);
        Assert.Equal(2.25, transfers.GetProperty("compute").GetProperty("mean").GetDouble(), 9);
        Assert.Equal(0.75, transfers.GetProperty("d2h").GetProperty("max").GetDouble(), 9);
        Assert.Equal(2, transfers.GetProperty("compute").GetProperty("count").GetInt32());

        var lines = BenchmarkCsv.ToCsv(result).TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        var header = lines[0].Split(',');
        var row = lines[1].Split(',');
        Assert.Equal("0.6", row[Array.IndexOf(header, "h2d_mean_ms")]);
        Assert.Equal("2.25", row[Array.IndexOf(header, "compute_mean_ms")]);
        Assert.Equal("0.5", row[Array.IndexOf(header, "d2h_mean_ms")]);
        var plain = BenchmarkCsv.ToCsv(Result.Value).Split('\n')[1].TrimEnd('\r').Split(',');
        Assert.Equal(string.Empty, plain[Array.IndexOf(header, "compute_mean_ms")]);

        var html = Path.Combine(Directory.CreateTempSubdirectory("bw-transfers-").FullName, "r.html");
        try
        {
            HtmlReport.WriteBench(html, result);
            var text = File.ReadAllText(html);
            Assert.Contains("phases b=1 c=1", text, StringComparison.Ordinal);
            Assert.Contains("compute 2.25 ms", text, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(html)!, true);
        }
    }

    [Fact]
    public void Writing_into_a_missing_folder_is_a_clear_error()
    {
        var e = Assert.Throws<BatchwiseException>(() => BenchmarkJson.Write(Result.Value, "/nonexistent-folder/x.json"));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }
}
