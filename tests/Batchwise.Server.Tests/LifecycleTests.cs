using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>Queue limits, client disconnects and drain, against a server whose engine runs only when the test opens a gate.</summary>
public sealed class LifecycleTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_full_queue_answers_503_with_retry_after_over_http_and_unavailable_over_grpc()
    {
        var (server, engine, model) = await StartAsync(maxQueueSize: 1);
        await using var _ = server;
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f, Ct);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var queued = PostAsync(http, 2f, Ct);
        await ServerState.Until(() => model.QueueLength == 1);

        using var rejected = await PostAsync(http, 3f, Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, rejected.StatusCode);
        Assert.Equal("1", rejected.Headers.GetValues("Retry-After").Single());
        Assert.Contains("queue is full", await rejected.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        using var channel = GrpcChannel.ForAddress(server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var request = new ModelInferRequest { ModelName = "gated" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        input.Shape.AddRange([1, 64]);
        request.Inputs.Add(input);
        request.RawInputContents.Add(ByteString.CopyFrom(new byte[256]));
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);

        engine.Open();
        using var first = await running;
        using var second = await queued;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
    }

    [Fact]
    public async Task A_client_that_disconnects_takes_its_queued_work_with_it()
    {
        var (server, engine, model) = await StartAsync(maxQueueSize: 8);
        await using var _ = server;
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f, Ct);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var abandoned = PostAsync(http, 2f, cts.Token);
        await ServerState.Until(() => model.QueueLength == 1);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        await ServerState.Until(() => model.QueueLength == 0);

        engine.Open();
        using var first = await running;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.DoesNotContain(2f, engine.Seen);
        using var scrape = new HttpClient();
        var metrics = await scrape.GetStringAsync(new Uri(server.MetricsAddress!, "/metrics"), Ct);
        Assert.Contains("reason=\"cancelled\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stopping_drains_requests_in_flight_and_queued_before_it_returns()
    {
        var (server, engine, model) = await StartAsync(maxQueueSize: 8);
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f, Ct);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var queued = PostAsync(http, 2f, Ct);
        await ServerState.Until(() => model.QueueLength == 1);

        var stopping = server.StopAsync();
        await ServerState.Until(() => !model.IsReady);
        Assert.False(stopping.IsCompleted, "stop waits for the requests in flight");
        engine.Open();
        using var first = await running;
        using var second = await queued;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        await stopping.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Contains(2f, engine.Seen);
        await server.DisposeAsync();
    }

    [Fact]
    public async Task While_draining_new_requests_get_503_and_the_accepted_ones_finish()
    {
        var (server, engine, model) = await StartAsync(maxQueueSize: 8);
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f, Ct);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        var stopping = server.StopAsync();
        await ServerState.Until(() => !model.IsReady);
        using (var late = new HttpClient { BaseAddress = server.HttpAddress })
        using (var refused = await PostAsync(late, 2f, Ct))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Contains("stopping", JsonDocument.Parse(await refused.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
            Assert.True(refused.Headers.ConnectionClose, "a 503 of the drain closes its connection");
        }

        engine.Open();
        using var first = await running;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        // Answered during the drain: its connection closes, so the client's next request does not go out on a connection
        // the stop is about to close.
        Assert.True(first.Headers.ConnectionClose, "an answer given during the drain closes its connection");
        var report = await stopping.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(0, report.Dropped);
        Assert.Equal(1, report.InFlightAtStop);
        Assert.DoesNotContain(2f, engine.Seen);
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Requests_unanswered_at_the_drain_timeout_are_dropped_and_counted()
    {
        var (server, engine, _) = await StartAsync(maxQueueSize: 8, drainTimeout: TimeSpan.FromMilliseconds(300));
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        engine.Close();
        var running = PostAsync(http, 1f, Ct);
        await engine.Started.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var queued = PostAsync(http, 2f, Ct);
        await ServerState.Until(() => server.Admission.InFlight == 2);

        var stopping = server.StopAsync();

        // Past the timeout the connections are closed; the engine run still in progress is waited for before the model is released.
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => running);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => queued);
        engine.Open();
        var report = await stopping.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(2, report.InFlightAtStop);
        Assert.Equal(2, report.Dropped);
        Assert.Equal(2, report.Accepted);
        await server.DisposeAsync();
    }

    private static async Task<(InferenceServer Server, GatedEngine Engine, ServedModel Model)> StartAsync(int maxQueueSize, TimeSpan? drainTimeout = null)
    {
        var engine = new GatedEngine();
        var name = "gated-" + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        var models = new ModelRepository();
        var model = models.Add("gated", "zoo:mlp", new ModelConfig
        {
            MaxBatchSize = 1,
            Engine = name,
            DynamicBatching = new DynamicBatchingConfig { MaxQueueSize = maxQueueSize },
        });
        var server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, DrainTimeout = drainTimeout ?? TimeSpan.FromSeconds(30) }, Ct);
        while (engine.Started.Wait(0))
        {
            // Forget the warm-up run.
        }

        return (server, engine, model);
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, float marker, CancellationToken cancellationToken)
    {
        var data = Enumerable.Repeat(marker, 64).ToArray();
        var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { 1, 64 }, datatype = "FP32", data } } });
        return http.PostAsync(new Uri("/v2/models/gated/infer", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), cancellationToken);
    }
}
