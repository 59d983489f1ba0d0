using Batchwise.Analysis;

namespace Batchwise.Tests.Analysis;

public sealed class BenchFileTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"bw-bench-{Guid.NewGuid():N}.json");

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void Reads_the_lowest_concurrency_points_of_a_bench_result()
    {
        File.WriteAllText(_path, """
            { "schema": "batchwise.bench", "schema_version": 1,
              "engine": { "name": "ort", "device": "Some CPU" }, "model": { "name": "mlp", "source": "zoo:mlp" },
              "points": [
                { "batch_size": 1, "concurrency": 1, "throughput_samples_per_s": 100.5, "latency_ms": { "count": 40, "p50": 9.9, "p90": 12 } },
                { "batch_size": 4, "concurrency": 1, "throughput_samples_per_s": 300, "latency_ms": { "count": 30, "p50": 13, "p90": 14 } },
                { "batch_size": 4, "concurrency": 2, "throughput_samples_per_s": 350, "latency_ms": { "count": 30, "p50": 22, "p90": 25 } } ] }
            """);
        var contents = BenchFile.Read(_path);
        Assert.Equal("ort", contents.Engine);
        Assert.Equal("Some CPU", contents.Device);
        Assert.Equal("zoo:mlp", contents.Model);
        var points = contents.Points;
        Assert.Equal([1, 4], points.Select(p => p.BatchSize));
        Assert.Equal(100.5, points[0].Throughput);
        Assert.Equal(0.0099, points[0].LatencyMedianSeconds, 9);
        Assert.Equal(0.012, points[0].LatencyP90Seconds, 9);
        Assert.Equal(40, points[0].Runs);
        Assert.Equal(300, points[1].Throughput);
    }

    [Fact]
    public void A_points_device_clocks_are_read_from_a_bench_result_and_from_an_explain_report()
    {
        File.WriteAllText(_path, """
            { "schema": "batchwise.bench", "schema_version": 1, "engine": { "name": "cuda", "device": "GPU" },
              "points": [ { "batch_size": 8, "concurrency": 1, "throughput_samples_per_s": 800, "latency_ms": { "count": 9, "p50": 10, "p90": 11 },
                            "device_clocks": { "sm_clock_mhz": 1740, "power_watts": 699, "limits": { "power cap": 0.8 }, "samples": 5 } } ] }
            """);
        var fromBench = BenchFile.Read(_path).Points[0].Clocks!;
        Assert.Equal(1740, fromBench.SmClockMhz);
        Assert.Equal(0.8, fromBench.Limits["power cap"]);

        File.WriteAllText(_path, """
            { "schema": "batchwise.explain", "ceilings": { "engine": "cuda", "device": "GPU" }, "context": { "model": "zoo:mlp" },
              "measured": [ { "batch_size": 8, "throughput_samples_per_s": 800, "latency_p50_s": 0.01, "latency_p90_s": 0.011, "latency_min_s": 0.0099, "runs": 9,
                              "device_clocks": { "sm_clock_mhz": 1755, "power_watts": null, "limits": {}, "samples": 4 } },
                            { "batch_size": 16, "throughput_samples_per_s": 900, "latency_p50_s": 0.018, "latency_p90_s": 0.019, "latency_min_s": 0.017, "runs": 6 } ] }
            """);
        var fromExplain = BenchFile.Read(_path).Points;
        Assert.Equal(1755, fromExplain[0].Clocks!.SmClockMhz);
        Assert.Null(fromExplain[0].Clocks!.PowerWatts);
        Assert.Null(fromExplain[1].Clocks);
    }

    [Theory]
    [InlineData("""{ "nothing": [1, 2] }""", "not a bench result")]
    [InlineData("""{ "schema": "batchwise.bench", "schema_version": 99, "points": [] }""", "schema version 99")]
    [InlineData("""{ "schema": "batchwise.bench", "schema_version": 1, "points": [] }""", "no measured points")]
    [InlineData("""{ "schema": "batchwise.bench", "points": [ { "batch_size": 1 } ] }""", "not a readable bench result")]
    [InlineData("""{ not json""", "not a readable bench result")]
    public void A_file_that_is_not_a_usable_bench_result_is_a_clear_error(string json, string expected)
    {
        File.WriteAllText(_path, json);
        var e = Assert.Throws<BatchwiseException>(() => BenchFile.Read(_path));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }
}
