using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Server.Load;
using Batchwise.Server.Protocol;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>Model control over HTTP and gRPC (Triton's model repository extension) against a live server.</summary>
public sealed class ModelControlTests
{
    private static readonly RepositoryOptions Explicit = new() { Mode = ModelControlMode.Explicit, Log = _ => { } };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Unload_lets_requests_in_flight_finish_while_new_ones_get_503()
    {
        var (server, engine) = await StartGatedAsync();
        await using var _ = server;
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        var unloading = http.PostAsync(new Uri("/v2/repository/models/gated/unload", UriKind.Relative), null, Ct);
        await ServerState.Until(() => server.Models.Index()[0].State == "UNLOADING");
        using (var refused = await PostAsync(http, 2f))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Contains("is not available (UNLOADING: unloaded)", await refused.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        }

        Assert.False(unloading.IsCompleted, "the unload waits for the request in flight");
        engine.Open();
        using (var first = await running)
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        using (var unloaded = await unloading)
        {
            Assert.Equal(HttpStatusCode.OK, unloaded.StatusCode);
        }

        using var index = await IndexAsync(http);
        Assert.Equal("UNAVAILABLE", index.RootElement[0].GetProperty("state").GetString());
        Assert.Equal("unloaded", index.RootElement[0].GetProperty("reason").GetString());
        using var notReady = await http.GetAsync(new Uri("/v2/models/gated/ready", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, notReady.StatusCode);
    }

    [Fact]
    public async Task A_reload_serves_new_requests_on_the_new_version_while_the_old_one_finishes()
    {
        var (server, engine) = await StartGatedAsync();
        await using var _ = server;
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        // The new version runs on ONNX Runtime, so its warm-up does not wait on the closed gate.
        var config = JsonSerializer.Serialize(new { version = "2", engine = "ort", max_batch_size = 1, dynamic_batching = new { } });
        var body = JsonSerializer.Serialize(new { parameters = new { config } });
        var reloading = http.PostAsync(new Uri("/v2/repository/models/gated/load", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        await ServerState.Until(() => server.Models.Find("gated").Version == "2");
        using (var fresh = await PostAsync(http, 2f))
        {
            Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);
            Assert.Equal("2", (await ReadJsonAsync(fresh)).RootElement.GetProperty("model_version").GetString());
        }

        engine.Open();
        using (var old = await running)
        {
            Assert.Equal(HttpStatusCode.OK, old.StatusCode);
            Assert.Equal("1", (await ReadJsonAsync(old)).RootElement.GetProperty("model_version").GetString());
        }

        using var reloaded = await reloading;
        Assert.Equal(HttpStatusCode.OK, reloaded.StatusCode);
        Assert.DoesNotContain(2f, engine.Seen);
    }

    [Fact]
    public async Task Grpc_repository_index_load_and_unload()
    {
        var (server, _) = await StartGatedAsync();
        await using var __ = server;
        using var channel = GrpcChannel.ForAddress(server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var index = await client.RepositoryIndexAsync(new RepositoryIndexRequest(), cancellationToken: Ct);
        Assert.Equal(("gated", "1", "READY"), (index.Models[0].Name, index.Models[0].Version, index.Models[0].State));

        await client.RepositoryModelUnloadAsync(new RepositoryModelUnloadRequest { ModelName = "gated" }, cancellationToken: Ct);
        Assert.False((await client.ModelReadyAsync(new ModelReadyRequest { Name = "gated" }, cancellationToken: Ct)).Ready);
        Assert.Empty((await client.RepositoryIndexAsync(new RepositoryIndexRequest { Ready = true }, cancellationToken: Ct)).Models);

        await client.RepositoryModelLoadAsync(new RepositoryModelLoadRequest { ModelName = "gated" }, cancellationToken: Ct);
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "gated" }, cancellationToken: Ct)).Ready);

        var bad = new RepositoryModelLoadRequest { ModelName = "gated" };
        bad.Parameters.Add("config", new ModelRepositoryParameter { StringParam = "{ \"instance_count\": 0 }" });
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.RepositoryModelLoadAsync(bad, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("instance_count is 0", e.Status.Detail, StringComparison.Ordinal);
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "gated" }, cancellationToken: Ct)).Ready);

        var files = new RepositoryModelLoadRequest { ModelName = "gated" };
        files.Parameters.Add("file:1/model.onnx", new ModelRepositoryParameter { BytesParam = Google.Protobuf.ByteString.CopyFrom(1, 2) });
        e = await Assert.ThrowsAsync<RpcException>(async () => await client.RepositoryModelLoadAsync(files, cancellationToken: Ct));
        Assert.Contains("not supported", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Load_and_unload_are_unavailable_when_model_control_is_off()
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig());
        await using var server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 }, Ct);
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        using var response = await http.PostAsync(new Uri("/v2/repository/models/mlp/unload", UriKind.Relative), null, Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("--model-control-mode explicit", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        using var index = await IndexAsync(http);
        Assert.Equal("READY", index.RootElement[0].GetProperty("state").GetString());
    }

    /// <summary>
    /// The issue's hot-reload check: eight clients in a closed loop while the model is unloaded and loaded again twice.
    /// Every failure must be the documented 503 / UNAVAILABLE of the unloaded window; reloads in place fail nothing.
    /// </summary>
    [Theory]
    [InlineData("http", "http_503")]
    [InlineData("grpc", "grpc_Unavailable")]
    public async Task Hot_reload_under_load_fails_only_the_unloaded_window_with_unavailable(string protocol, string unavailable)
    {
        var models = new ModelRepository(options: Explicit);
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 200 } });
        await using var server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 }, Ct);
        var generator = new LoadGenerator(new LoadOptions
        {
            Url = protocol == "http" ? server.HttpAddress : server.GrpcAddress,
            Model = "mlp",
            Protocol = protocol,
            Concurrency = [8],
            Warmup = TimeSpan.FromMilliseconds(200),
            Window = TimeSpan.FromSeconds(1),
            StableWindows = 3,
            MaxWindows = 3,
        });
        var load = generator.RunAsync(cancellationToken: Ct);
        await Task.Delay(600, Ct);
        var unloads = 0;
        for (var cycle = 0; cycle < 2; cycle++)
        {
            await models.LoadAsync("mlp");
            await models.UnloadAsync("mlp");
            unloads++;
            await Task.Delay(150, Ct);
            await models.LoadAsync("mlp");
            await Task.Delay(150, Ct);
        }

        var point = Assert.Single((await load).Points);
        TestContext.Current.TestOutputHelper?.WriteLine($"{protocol}: {point.Requests} requests succeeded, {point.Errors} refused ({string.Join(", ", point.ErrorKinds.Select(k => $"{k.Key}: {k.Value}"))}) across {unloads} unload/load cycles and 2 reloads in place");
        Assert.True(point.Requests > 100, $"only {point.Requests} requests succeeded");
        Assert.Equal(2, unloads);
        Assert.All(point.ErrorKinds.Keys, kind => Assert.Equal(unavailable, kind));
        Assert.True(point.Errors > 0, "the unloaded windows fell inside the measurement, so some requests must have been refused");
    }

    private static async Task<(InferenceServer Server, GatedEngine Engine)> StartGatedAsync()
    {
        var engine = new GatedEngine();
        var name = "gated-" + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        var models = new ModelRepository(options: Explicit);
        models.Add("gated", "zoo:mlp", new ModelConfig { MaxBatchSize = 1, Engine = name, DynamicBatching = new DynamicBatchingConfig() });
        var server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 }, Ct);
        while (engine.Started.Wait(0))
        {
            // Forget the warm-up run.
        }

        return (server, engine);
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, float marker)
    {
        var data = Enumerable.Repeat(marker, 64).ToArray();
        var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { 1, 64 }, datatype = "FP32", data } } });
        return http.PostAsync(new Uri("/v2/models/gated/infer", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
    }

    private static async Task<JsonDocument> IndexAsync(HttpClient http)
    {
        using var response = await http.PostAsync(new Uri("/v2/repository/index", UriKind.Relative), new StringContent("{}", Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await ReadJsonAsync(response);
    }

    private static async Task<JsonDocument> ReadJsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
}
