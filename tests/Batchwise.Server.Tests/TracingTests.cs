using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenTelemetry.Exporter;

namespace Batchwise.Server.Tests;

/// <summary>OpenTelemetry spans per request, exported to OpenTelemetry's in-memory exporter.</summary>
public sealed class TracingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_traced_request_has_its_stages_and_names_the_batch_it_ran_in()
    {
        var spans = new List<Activity>();
        await using var server = await StartAsync(spans, new TraceSettings("TIMESTAMPS", rate: 1));
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => PostAsync(http, $"r-{i}")));
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        await server.StopAsync(); // a request's spans are written after its response: stopping waits for them

        var roots = spans.Where(s => s.DisplayName == "infer mlp").ToList();
        Assert.Equal(6, roots.Count);
        Assert.Equal(Enumerable.Range(0, 6).Select(i => $"r-{i}").Order(), roots.Select(r => (string)r.GetTagItem("request.id")!).Order());
        foreach (var root in roots)
        {
            var children = spans.Where(s => s.ParentSpanId == root.SpanId).ToDictionary(s => s.DisplayName);
            Assert.Equal(["compute_infer", "compute_input", "compute_output", "queue"], children.Keys.Order());
            Assert.All(children.Values, c => Assert.Equal(root.TraceId, c.TraceId));
            Assert.All(children.Values, c => Assert.InRange(c.StartTimeUtc, root.StartTimeUtc, root.StartTimeUtc + root.Duration));
            Assert.True(children["queue"].StartTimeUtc + children["queue"].Duration <= children["compute_infer"].StartTimeUtc + TimeSpan.FromMilliseconds(1));
            Assert.Equal("http", root.GetTagItem("rpc.system"));
        }

        // Requests batched together share batch.id, and batch.requests says how many they were.
        var infers = spans.Where(s => s.DisplayName == "compute_infer").ToList();
        foreach (var batch in infers.GroupBy(s => (long)s.GetTagItem("batch.id")!))
        {
            Assert.All(batch, s => Assert.Equal(batch.Count(), (int)s.GetTagItem("batch.requests")!));
        }

        Assert.Equal(6, infers.Count);
    }

    [Fact]
    public async Task Tracing_is_off_by_default_and_samples_one_request_in_trace_rate()
    {
        var spans = new List<Activity>();
        var settings = new TraceSettings();
        await using var server = await StartAsync(spans, settings);
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        for (var i = 0; i < 4; i++)
        {
            using var r = await PostAsync(http, $"off-{i}");
        }

        Assert.Empty(spans);
        settings.Update(null, new Dictionary<string, IReadOnlyList<string>?> { ["trace_level"] = ["TIMESTAMPS"], ["trace_rate"] = ["2"], ["trace_count"] = ["1"] });
        for (var i = 0; i < 6; i++)
        {
            using var r = await PostAsync(http, $"on-{i}");
        }

        await server.StopAsync(); // a request's spans are written after its response: stopping waits for them
        Assert.Single(spans, s => s.DisplayName == "infer mlp");
        Assert.Equal("0", settings.Describe(null)["trace_count"][0]);
    }

    [Fact]
    public async Task A_callers_traceparent_becomes_the_parent_of_the_request_span()
    {
        var spans = new List<Activity>();
        await using var server = await StartAsync(spans, new TraceSettings("TIMESTAMPS", rate: 1));
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        var traceId = ActivityTraceId.CreateRandom();
        var parent = ActivitySpanId.CreateRandom();
        using (var request = new HttpRequestMessage(HttpMethod.Post, new Uri("/v2/models/mlp/infer", UriKind.Relative)) { Content = Body("p-1") })
        {
            request.Headers.Add("traceparent", $"00-{traceId}-{parent}-01");
            using var response = await http.SendAsync(request, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await server.StopAsync();
        var root = Assert.Single(spans, s => s.DisplayName == "infer mlp");
        Assert.Equal(traceId, root.TraceId);
        Assert.Equal(parent, root.ParentSpanId);
    }

    [Fact]
    public async Task A_failed_request_span_carries_the_error()
    {
        var spans = new List<Activity>();
        await using var server = await StartAsync(spans, new TraceSettings("TIMESTAMPS", rate: 1));
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        using var response = await http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), new StringContent("{\"inputs\": 1}", Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        await server.StopAsync();
        var root = Assert.Single(spans, s => s.DisplayName == "infer mlp");
        Assert.Equal(ActivityStatusCode.Error, root.Status);
        Assert.Equal("invalid", root.StatusDescription);
    }

    [Theory]
    [InlineData(new[] { "level=TIMESTAMPS", "rate=1", "count=5", "opentelemetry,url=collector:4318/v1/traces", "opentelemetry,resource=deployment=test" }, null)]
    [InlineData(new[] { "level=LOUD" }, "level is OFF or TIMESTAMPS")]
    [InlineData(new[] { "mode=triton" }, "mode is opentelemetry")]
    [InlineData(new[] { "triton,file=/tmp/t.json" }, "is not understood")]
    public void Trace_config_reads_tritons_forms_and_names_a_bad_one(string[] values, string? error)
    {
        if (error is null)
        {
            var config = TraceConfig.Parse(values);
            Assert.Equal(("TIMESTAMPS", 1, 5, "http://collector:4318/v1/traces"), (config.Level, config.Rate, config.Count, config.Url));
            Assert.Equal("test", config.Resource["deployment"]);
            return;
        }

        var e = Assert.Throws<BatchwiseException>(() => TraceConfig.Parse(values));
        Assert.Contains(error, e.Message, StringComparison.Ordinal);
    }

    private static Task<InferenceServer> StartAsync(List<Activity> spans, TraceSettings settings)
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 20_000 } });
        return InferenceServer.StartAsync(models, new ServerOptions
        {
            HttpPort = 0,
            GrpcPort = 0,
            MetricsPort = 0,
            Traces = settings,
            TraceExporter = new InMemoryExporter<Activity>(spans),
        });
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, string id) =>
        http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), Body(id), Ct);

    private static StringContent Body(string id) =>
        new(JsonSerializer.Serialize(new { id, inputs = new[] { new { name = "input", shape = new[] { 1, 64 }, datatype = "FP32", data = ServerFixture.Input(1) } } }), Encoding.UTF8, "application/json");
}
