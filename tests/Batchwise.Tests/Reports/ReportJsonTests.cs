using Batchwise.Analysis;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Reports;
using Batchwise.Zoo;

namespace Batchwise.Tests.Reports;

/// <summary>Every report is a record written and read back through the one generated JSON layer.</summary>
public sealed class ReportJsonTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bw-report-json-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_bench_document_round_trips_through_its_record_and_explain_reads_its_points()
    {
        var result = new BenchmarkRunner(new OrtEngine(), new EngineOptions { IntraOpThreads = 1 }).Run(
            ModelZoo.Build("zoo:mlp"), "zoo:mlp", new BenchmarkOptions { BatchSizes = [1, 2], Concurrency = [1, 2], Duration = TimeSpan.FromMilliseconds(60), Warmup = TimeSpan.Zero, MaxWindows = 3 });
        var json = BenchmarkJson.ToJson(result);
        var back = ReportJson.Deserialize<BenchDocument>(json, "test", "report", "hint");
        Assert.Equal(json, ReportJson.Serialize(back));
        Assert.Equal(result.Points.Count, back.Points.Count);
        Assert.Equal(["batch"], back.Model.Inputs[0].Shape.Where(d => d.Value is null).Select(d => d.Symbol));
        Assert.Equal(StopReason.Completed, back.StopReason);

        var path = Path.Combine(_dir, "bench.json");
        File.WriteAllText(path, json);
        var contents = BenchFile.Read(path);
        var atOne = result.Points.Where(p => p.Concurrency == 1).ToList();
        Assert.Equal(atOne.Select(p => p.BatchSize), contents.Points.Select(p => p.BatchSize));
        Assert.Equal(atOne.Select(p => p.Throughput), contents.Points.Select(p => p.Throughput));
        Assert.Equal(atOne.Select(p => p.LatencyMs.P50 / 1e3), contents.Points.Select(p => p.LatencyMedianSeconds));
        Assert.Equal(("ort", "zoo:mlp"), (contents.Engine, contents.Model));
    }

    [Fact]
    public void An_explain_document_round_trips_and_leaves_out_what_does_not_exist()
    {
        var explanation = HtmlReportTests.SampleExplanation();
        var json = ExplanationJson.ToJson(explanation, new Dictionary<string, string> { ["model"] = "synthetic", ["date"] = "today" });
        var back = ReportJson.Deserialize<ExplainDocument>(json, "test", "report", "hint");
        Assert.Equal(json, ReportJson.Serialize(back));
        Assert.Equal("batchwise.explain", back.Schema);
        Assert.Equal(explanation.Predicted.Count, back.Predicted.Count);
        Assert.DoesNotContain("\"launch\"", json, StringComparison.Ordinal); // a CPU device has no launch mode
    }

    [Fact]
    public void Load_and_devices_documents_round_trip_with_their_schema_first()
    {
        var latency = Statistics.Summarize([1.0, 2.0, 3.0, 4.0]);
        var load = new LoadReport("http://h:1/", "m", "grpc", 2, "x: float32 [2, 4]", "2026-12-01T00:00:00Z", "host", "cpu", 2,
            [new LoadPoint(8, null, 100.5, 201, 1000, 3, new Dictionary<string, long> { ["http_503"] = 3 }, latency, true, 4.5, 3, 6.0)]);
        var json = ReportJson.Serialize(load);
        Assert.StartsWith("{\n  \"schema\": \"batchwise.load\",\n  \"schema_version\": 1,", json.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.Contains("\"stddev\"", json, StringComparison.Ordinal); // the same name as bench's latency statistics
        Assert.Equal(json, ReportJson.Serialize(ReportJson.Deserialize<LoadReport>(json, "test", "report", "hint")));

        var devices = new DevicesDocument([new DeviceRecord(0, "GPU", 1 << 30, 132, "9.0", "0000:01:00.0", "580", "13.0", "9.14", "13.1", "13.0", null)]);
        json = ReportJson.Serialize(devices);
        Assert.Equal(json, ReportJson.Serialize(ReportJson.Deserialize<DevicesDocument>(json, "test", "report", "hint")));
        Assert.Contains("\"ceilings\": null", json, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_that_is_not_a_bench_result_is_a_one_line_error()
    {
        var path = Path.Combine(_dir, "load.json");
        File.WriteAllText(path, "{\"schema\": \"batchwise.load\", \"schema_version\": 1, \"points\": []}");
        var e = Assert.Throws<BatchwiseException>(() => BenchFile.Read(path));
        Assert.Contains("is not a bench result (schema \"batchwise.load\"", e.Message, StringComparison.Ordinal);

        File.WriteAllText(path, "{\"schema\": \"batchwise.bench\", \"schema_version\": 99, \"points\": []}");
        Assert.Contains("schema version 99", Assert.Throws<BatchwiseException>(() => BenchFile.Read(path)).Message, StringComparison.Ordinal);

        File.WriteAllText(path, "{not json");
        Assert.Contains("is not a readable bench result", Assert.Throws<BatchwiseException>(() => BenchFile.Read(path)).Message, StringComparison.Ordinal);
    }
}
