using Batchwise.Benchmarking;
using Batchwise.Server.Load;

namespace Batchwise.Server.Tests;

public sealed class LoadGeneratorTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    [Theory]
    [InlineData("http", false, "frames")]
    [InlineData("http", true, "frames")]
    [InlineData("grpc", false, "frames")]
    [InlineData("grpc", false, "grpc-dotnet")]
    public async Task A_closed_loop_point_measures_throughput_and_latency_without_errors(string protocol, bool jsonData, string grpcClient)
    {
        var url = protocol == "http" ? fixture.Server.HttpAddress : fixture.Server.GrpcAddress;
        var generator = new LoadGenerator(new LoadOptions
        {
            Url = url,
            Model = "mlp",
            Protocol = protocol,
            GrpcClient = grpcClient,
            JsonData = jsonData,
            Concurrency = [2],
            Warmup = TimeSpan.FromMilliseconds(100),
            Window = TimeSpan.FromMilliseconds(150),
            MaxWindows = 3,
        });
        var report = await generator.RunAsync(cancellationToken: TestContext.Current.CancellationToken);
        var point = Assert.Single(report.Points);
        Assert.Equal(2, point.Concurrency);
        Assert.True(point.Requests > 0);
        Assert.Equal(0, point.Errors);
        Assert.True(point.RequestsPerSecond > 0);
        Assert.True(point.Latency.P50 > 0 && point.Latency.P50 <= point.Latency.P99);
        Assert.Equal("input: float32 [1, 64]", report.Inputs);

        // The client reports its own cost: some CPU per request, and the ceiling that implies.
        Assert.True(point.ClientCpuMillisecondsPerRequest > 0, $"{point.ClientCpuMillisecondsPerRequest}");
        Assert.True(point.ClientCeilingRequestsPerSecond > 0);
        Assert.Contains("ms CPU/request", LoadGenerator.Describe(point), StringComparison.Ordinal);
    }

    [Fact]
    public void The_client_is_reported_as_the_limit_when_it_keeps_half_its_hosts_cores_busy()
    {
        var point = new Batchwise.Reports.LoadPoint(4, null, 500, 500, 1000, 0, new Dictionary<string, long>(), Statistics.Summarize([1.0, 2.0]), true, 1, 3, 2);

        // 1.5 s of CPU for 1,000 requests in 2 s on 2 cores: 1.5 ms each, 0.75 cores busy, ceiling 1,333 req/s, sent 500/s.
        var relaxed = LoadGenerator.WithClientCost(point, 1.5, 1000, 2);
        Assert.Equal(1.5, relaxed.ClientCpuMillisecondsPerRequest, 6);
        Assert.Equal(0.75, relaxed.ClientCoresBusy, 6);
        Assert.Equal(2 / 0.0015, relaxed.ClientCeilingRequestsPerSecond, 3);
        Assert.False(relaxed.ClientBound);
        Assert.DoesNotContain("CLIENT-BOUND", LoadGenerator.DescribeClient(relaxed), StringComparison.Ordinal);

        // 2.4 s of CPU in 2 s: 1.2 cores of 2 busy, so the client may be what limits the point.
        var busy = LoadGenerator.WithClientCost(point, 2.4, 1000, 2);
        Assert.True(busy.ClientBound);
        Assert.Contains("CLIENT-BOUND", LoadGenerator.DescribeClient(busy), StringComparison.Ordinal);

        // The same cost on a 1-core host: 0.75 of its only core.
        Assert.True(LoadGenerator.WithClientCost(point, 1.5, 1000, 1).ClientBound);
    }

    [Theory]
    [InlineData("http")]
    [InlineData("grpc")]
    public async Task With_system_shared_memory_requests_reference_a_registered_region_released_at_the_end(string protocol)
    {
        var generator = new LoadGenerator(new LoadOptions
        {
            Url = protocol == "http" ? fixture.Server.HttpAddress : fixture.Server.GrpcAddress,
            Model = "mlp",
            Protocol = protocol,
            SharedMemory = "system",
            Concurrency = [2],
            Warmup = TimeSpan.FromMilliseconds(100),
            Window = TimeSpan.FromMilliseconds(150),
            MaxWindows = 3,
        });
        var report = await generator.RunAsync(cancellationToken: TestContext.Current.CancellationToken);
        var point = Assert.Single(report.Points);
        Assert.True(point.Requests > 0);
        Assert.Equal(0, point.Errors);
        Assert.Equal("input: float32 [1, 64]; inputs in system shared memory", report.Inputs);
        Assert.Empty(Directory.GetFiles("/dev/shm", $"batchwise-load-{Environment.ProcessId}-*"));
    }

    [Fact]
    public async Task An_open_loop_point_runs_at_the_rate_it_records_without_errors()
    {
        var generator = new LoadGenerator(new LoadOptions
        {
            Url = fixture.Server.HttpAddress,
            Model = "mlp",
            RequestRates = [100],
            BatchSize = 2,
            Warmup = TimeSpan.FromMilliseconds(100),
            Window = TimeSpan.FromMilliseconds(300),
            MaxWindows = 3,
        });
        var point = Assert.Single((await generator.RunAsync(cancellationToken: TestContext.Current.CancellationToken)).Points);
        Assert.Equal(100, point.RequestRate);
        Assert.Equal(0, point.Errors);
        Assert.True(point.Requests > 0);
        Assert.Equal(2 * point.RequestsPerSecond, point.InferencesPerSecond, 6);

        // How close the achieved rate comes to the offered one depends on the machine: that is a benchmark
        // (bench/serve/run.sh, `load --request-rate`), not a unit test. The schedule itself is checked below.
    }

    [Fact]
    public void Poisson_arrivals_have_exponential_gaps_at_the_rate()
    {
        const double Rate = 100;
        var times = LoadGenerator.PoissonArrivals(Rate, seed: 7).Take(20_000).ToArray();
        var gaps = times.Zip(times.Skip(1), (a, b) => b - a).Prepend(times[0]).ToArray();
        Assert.All(gaps, g => Assert.True(g > 0));

        // Exponential(rate): mean 1/rate and standard deviation 1/rate; P(gap > mean) = 1/e. With 20,000 draws each
        // estimate lies within a few percent (the standard error of the mean is 0.7% of it).
        var mean = gaps.Average();
        var sd = Math.Sqrt(gaps.Sum(g => (g - mean) * (g - mean)) / (gaps.Length - 1));
        Assert.InRange(mean * Rate, 0.97, 1.03);
        Assert.InRange(sd * Rate, 0.95, 1.05);
        Assert.InRange(gaps.Count(g => g > 1 / Rate) / (double)gaps.Length, Math.Exp(-1) - 0.02, Math.Exp(-1) + 0.02);
        Assert.Equal(times, LoadGenerator.PoissonArrivals(Rate, seed: 7).Take(20_000)); // seeded: the same schedule again
    }

    [Fact]
    public async Task An_unknown_model_fails_with_a_clear_error()
    {
        var generator = new LoadGenerator(new LoadOptions { Url = fixture.Server.HttpAddress, Model = "nope", Concurrency = [1] });
        var e = await Assert.ThrowsAsync<BatchwiseException>(() => generator.RunAsync(cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("404", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dynamic_dimensions_beyond_the_batch_need_a_shape()
    {
        var inputs = new[] { new InputDescription("tokens", "INT64", [-1, -1]) };
        var e = Assert.Throws<BatchwiseException>(() => LoadInputs.Generate(inputs, 1, ShapeBindings.None));
        Assert.Contains("--shape tokens:batch,128", e.Hint, StringComparison.Ordinal);
        var given = LoadInputs.Generate(inputs, 1, ShapeBindings.Parse(["tokens:1,128"]));
        Assert.Equal(new long[] { 1, 128 }, given[0].Tensor.Shape);
    }

    [Fact]
    public void Shape_takes_the_batch_word_as_bench_does_and_refuses_symbols_the_metadata_cannot_name()
    {
        var inputs = new[] { new InputDescription("tokens", "INT64", [-1, -1]) };
        var given = LoadInputs.Generate(inputs, 4, ShapeBindings.Parse(["tokens:batch,32"]));
        Assert.Equal(new long[] { 4, 32 }, given[0].Tensor.Shape);

        var e = Assert.Throws<BatchwiseException>(() => LoadInputs.Generate(inputs, 1, ShapeBindings.Parse(["seq=32"])));
        Assert.Contains("names no dimensions", e.Message, StringComparison.Ordinal);
        Assert.Contains("--shape tokens:batch,32", e.Hint, StringComparison.Ordinal);
    }
}
