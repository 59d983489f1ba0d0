using Batchwise.Analysis;

namespace Batchwise.Tests.Analysis;

public sealed class BenchFileTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"bw-bench-{Guid.NewGuid():N}.json");

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void Reads_points_wherever_they_sit_keeping_the_best_per_batch_size()
    {
        File.WriteAllText(_path, """
            { "schema": 1, "context": { "engine": "ort" },
              "results": [
                { "batch_size": 1, "throughput": 100.5, "latency_p50_ms": 9.9, "latency_p90_ms": 12 },
                { "batch_size": 4, "throughput": 300, "concurrency": 1 },
                { "batch_size": 4, "throughput": 350, "concurrency": 2 } ] }
            """);
        var points = BenchFile.Read(_path);
        Assert.Equal([1, 4], points.Select(p => p.BatchSize));
        Assert.Equal(100.5, points[0].Throughput);
        Assert.Equal(0.0099, points[0].LatencyMedianSeconds, 9);
        Assert.Equal(0.012, points[0].LatencyP90Seconds, 9);
        Assert.Equal(350, points[1].Throughput);
    }

    [Fact]
    public void A_file_without_points_is_a_clear_error()
    {
        File.WriteAllText(_path, """{ "nothing": [1, 2] }""");
        var e = Assert.Throws<BatchwiseException>(() => BenchFile.Read(_path));
        Assert.Contains("no measured batch sizes", e.Message, StringComparison.Ordinal);
    }
}
