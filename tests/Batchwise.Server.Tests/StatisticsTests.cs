using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>Triton's statistics extension over HTTP and gRPC, on a server of its own (the counts start at zero).</summary>
public sealed class StatisticsTests : IAsyncLifetime
{
    private InferenceServer _server = null!;
    private HttpClient _http = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 100 } });
        models.Add("other", "zoo:mlp?classes=3", new ModelConfig { MaxBatchSize = 4 });
        _server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 });
        _http = new HttpClient { BaseAddress = _server.HttpAddress };
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Http_statistics_count_inferences_executions_batch_sizes_and_failures_in_tritons_schema()
    {
        for (var i = 0; i < 3; i++)
        {
            using var ok = await InferAsync(rows: 2);
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using (var bad = await _http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), new StringContent("{\"inputs\": 3}", Encoding.UTF8, "application/json"), Ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        }

        using var doc = await GetJsonAsync("/v2/models/mlp/stats");
        var stat = Assert.Single(doc.RootElement.GetProperty("model_stats").EnumerateArray());
        Assert.Equal("mlp", stat.GetProperty("name").GetString());
        Assert.Equal("1", stat.GetProperty("version").GetString());
        Assert.Equal(6, stat.GetProperty("inference_count").GetInt64());
        Assert.Equal(3, stat.GetProperty("execution_count").GetInt64());
        Assert.True(stat.GetProperty("last_inference").GetInt64() > DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeMilliseconds());
        var inference = stat.GetProperty("inference_stats");
        foreach (var key in new[] { "success", "queue", "compute_input", "compute_infer", "compute_output" })
        {
            Assert.Equal(3, inference.GetProperty(key).GetProperty("count").GetInt64());
            Assert.True(inference.GetProperty(key).GetProperty("ns").GetInt64() > 0, key);
        }

        Assert.Equal(1, inference.GetProperty("fail").GetProperty("count").GetInt64());
        Assert.Equal(0, inference.GetProperty("cache_hit").GetProperty("count").GetInt64());
        var success = inference.GetProperty("success").GetProperty("ns").GetInt64();
        var parts = new[] { "queue", "compute_input", "compute_infer", "compute_output" }.Sum(k => inference.GetProperty(k).GetProperty("ns").GetInt64());
        Assert.True(parts <= success, $"queue + compute ({parts} ns) cannot exceed the requests' total ({success} ns)");
        var batch = Assert.Single(stat.GetProperty("batch_stats").EnumerateArray());
        Assert.Equal(2, batch.GetProperty("batch_size").GetInt32());
        Assert.Equal(3, batch.GetProperty("compute_infer").GetProperty("count").GetInt64());
        Assert.True(batch.GetProperty("compute_infer").GetProperty("ns").GetInt64() > 0);
    }

    [Fact]
    public async Task Http_statistics_of_every_model_and_of_a_version_and_an_unknown_model()
    {
        using var all = await GetJsonAsync("/v2/models/stats");
        Assert.Equal(["mlp", "other"], all.RootElement.GetProperty("model_stats").EnumerateArray().Select(s => s.GetProperty("name").GetString()));
        using var version = await GetJsonAsync("/v2/models/other/versions/1/stats");
        Assert.Equal("other", Assert.Single(version.RootElement.GetProperty("model_stats").EnumerateArray()).GetProperty("name").GetString());
        using var unknown = await _http.GetAsync(new Uri("/v2/models/nope/stats", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("Unknown model 'nope'", await unknown.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Grpc_model_statistics_match_the_http_ones()
    {
        using var channel = GrpcChannel.ForAddress(_server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var request = new ModelInferRequest { ModelName = "other" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        input.Shape.AddRange([4, 64]);
        request.Inputs.Add(input);
        request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(new float[4 * 64].AsSpan())));
        await client.ModelInferAsync(request, cancellationToken: Ct);

        var stats = Assert.Single((await client.ModelStatisticsAsync(new ModelStatisticsRequest { Name = "other" }, cancellationToken: Ct)).ModelStats);
        Assert.Equal(4UL, stats.InferenceCount);
        Assert.Equal(1UL, stats.ExecutionCount);
        Assert.Equal(1UL, stats.InferenceStats.Success.Count);
        Assert.Equal(4UL, Assert.Single(stats.BatchStats).BatchSize);
        using var http = await GetJsonAsync("/v2/models/other/stats");
        var h = http.RootElement.GetProperty("model_stats")[0];
        Assert.Equal((long)stats.InferenceStats.Success.Ns, h.GetProperty("inference_stats").GetProperty("success").GetProperty("ns").GetInt64());
        Assert.Equal(2, (await client.ModelStatisticsAsync(new ModelStatisticsRequest(), cancellationToken: Ct)).ModelStats.Count);
    }

    private async Task<HttpResponseMessage> InferAsync(int rows)
    {
        var data = Enumerable.Repeat(0.5f, rows * 64).ToArray();
        var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { rows, 64 }, datatype = "FP32", data } } });
        return await _http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
    }

    private async Task<JsonDocument> GetJsonAsync(string path)
    {
        using var response = await _http.GetAsync(new Uri(path, UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
    }
}
