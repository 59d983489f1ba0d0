using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Engines;

namespace Batchwise.Server.Tests;

/// <summary>Prometheus metrics on their own port: Triton's nv_inference_* and nv_gpu_* families beside batchwise_*.</summary>
public sealed class MetricsTests : IAsyncLifetime
{
    private readonly FakeGpus _gpus = new();
    private InferenceServer _server = null!;
    private HttpClient _http = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 100 } });
        _server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, Gpus = _gpus });
        _http = new HttpClient { BaseAddress = _server.HttpAddress };
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Metrics_carry_tritons_families_and_ours_per_model()
    {
        for (var i = 0; i < 2; i++)
        {
            using var ok = await InferAsync("{\"inputs\":[{\"name\":\"input\",\"shape\":[3,64],\"datatype\":\"FP32\",\"data\":" + JsonSerializer.Serialize(new float[192]) + "}]}");
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using (var bad = await InferAsync("{\"inputs\":[]}"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        }

        var text = await ScrapeAsync();
        const string labels = "{model=\"mlp\",version=\"1\"}";
        Assert.Contains($"nv_inference_request_success{labels} 2", text, StringComparison.Ordinal);
        Assert.Contains("nv_inference_request_failure{model=\"mlp\",version=\"1\",reason=\"OTHER\"} 1", text, StringComparison.Ordinal);
        Assert.Contains($"nv_inference_count{labels} 6", text, StringComparison.Ordinal);
        Assert.Contains($"nv_inference_exec_count{labels} 2", text, StringComparison.Ordinal);
        foreach (var family in new[] { "request", "queue", "compute_input", "compute_infer", "compute_output" })
        {
            Assert.Matches($"nv_inference_{family}_duration_us\\{{model=\"mlp\",version=\"1\"\\}} [0-9.e+]+", text);
        }

        Assert.Contains($"nv_inference_pending_request_count{labels} 0", text, StringComparison.Ordinal);
        Assert.Matches("batchwise_inference_requests_total\\{model=\"mlp\",version=\"1\"\\} [1-9]", text);
        Assert.Matches("batchwise_inference_failures_total\\{model=\"mlp\",version=\"1\",reason=\"invalid\"\\} [1-9]", text);
        Assert.Contains("batchwise_inference_batch_size_bucket{model=\"mlp\",version=\"1\",le=\"4\"} 2", text, StringComparison.Ordinal);
        Assert.Contains($"batchwise_inference_compute_seconds_count{labels}", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Gpu_metrics_are_sampled_at_each_scrape_where_a_gpu_answers()
    {
        _gpus.Utilization = 0.25;
        var first = await ScrapeAsync();
        Assert.Contains("nv_gpu_utilization{gpu_uuid=\"GPU-test\"} 0.25", first, StringComparison.Ordinal);
        Assert.Contains("nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-test\"} 1073741824", first, StringComparison.Ordinal);
        Assert.Contains("nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-test\"} 8589934592", first, StringComparison.Ordinal);
        Assert.Contains("nv_gpu_power_usage{gpu_uuid=\"GPU-test\"} 71.5", first, StringComparison.Ordinal);
        _gpus.Utilization = 0.75;
        Assert.Contains("nv_gpu_utilization{gpu_uuid=\"GPU-test\"} 0.75", await ScrapeAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_are_served_on_the_metrics_port_only()
    {
        using var onHttp = await _http.GetAsync(new Uri("/metrics", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.NotFound, onHttp.StatusCode);
        Assert.Contains($"metrics are served on port {_server.MetricsAddress!.Port}", await onHttp.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        using var client = new HttpClient { BaseAddress = _server.MetricsAddress };
        using var inference = await client.GetAsync(new Uri("/v2/models/mlp", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.NotFound, inference.StatusCode);
    }

    private async Task<string> ScrapeAsync()
    {
        using var client = new HttpClient();
        return await client.GetStringAsync(new Uri(_server.MetricsAddress!, "/metrics"), Ct);
    }

    private Task<HttpResponseMessage> InferAsync(string body) =>
        _http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), Ct);

    private sealed class FakeGpus : IGpuTelemetry
    {
        public double Utilization { get; set; }

        public IReadOnlyList<GpuSample> Sample() => [new GpuSample("GPU-test", "Test GPU", Utilization, 1L << 30, 8L << 30, 71.5, 300)];
    }
}
