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
