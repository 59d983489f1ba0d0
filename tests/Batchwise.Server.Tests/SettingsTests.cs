using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>Triton's trace and logging extensions over HTTP and gRPC, on a server of its own (the settings change).</summary>
public sealed class SettingsTests : IAsyncLifetime
{
    private InferenceServer _server = null!;
    private HttpClient _http = null!;
    private GrpcChannel _channel = null!;
    private GRPCInferenceService.GRPCInferenceServiceClient _grpc = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig());
        _server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 });
        _http = new HttpClient { BaseAddress = _server.HttpAddress };
        _channel = GrpcChannel.ForAddress(_server.GrpcAddress);
        _grpc = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        _http.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Trace_settings_are_off_by_default_and_a_model_can_override_the_global_ones()
    {
        using (var global = await SendAsync(HttpMethod.Get, "/v2/trace/setting", null, HttpStatusCode.OK))
        {
            Assert.Equal("OFF", global.RootElement.GetProperty("trace_level")[0].GetString());
            Assert.Equal("opentelemetry", global.RootElement.GetProperty("trace_mode").GetString());
        }

        using (var model = await SendAsync(HttpMethod.Post, "/v2/models/mlp/trace/setting", "{\"trace_level\": [\"TIMESTAMPS\"], \"trace_rate\": \"1\"}", HttpStatusCode.OK))
        {
            Assert.Equal("TIMESTAMPS", model.RootElement.GetProperty("trace_level")[0].GetString());
            Assert.Equal("1", model.RootElement.GetProperty("trace_rate").GetString());
            Assert.Equal("-1", model.RootElement.GetProperty("trace_count").GetString());
        }

        Assert.True(_server.Options.Traces.ShouldTrace("mlp"));
        Assert.False(_server.Options.Traces.ShouldTrace("other"));
        using (var cleared = await SendAsync(HttpMethod.Post, "/v2/models/mlp/trace/setting", "{\"trace_level\": null, \"trace_rate\": null}", HttpStatusCode.OK))
        {
            Assert.Equal("OFF", cleared.RootElement.GetProperty("trace_level")[0].GetString());
        }

        var grpc = await _grpc.TraceSettingAsync(new TraceSettingRequest { ModelName = "mlp" }, cancellationToken: Ct);
        Assert.Equal(["OFF"], grpc.Settings["trace_level"].Value);
        Assert.Equal(["1000"], grpc.Settings["trace_rate"].Value);
    }

    [Theory]
    [InlineData("{\"trace_level\": [\"TENSORS\"]}", "TENSORS is not supported")]
    [InlineData("{\"trace_rate\": \"0\"}", "trace_rate '0' is not a positive integer")]
    [InlineData("{\"trace_file\": \"/tmp/x\"}", "does not apply")]
    [InlineData("{\"tracing\": \"yes\"}", "Unknown trace setting 'tracing'")]
    [InlineData("[1]", "must be a JSON object")]
    public async Task Bad_trace_settings_are_400_naming_them(string body, string message)
    {
        using var doc = await SendAsync(HttpMethod.Post, "/v2/trace/setting", body, HttpStatusCode.BadRequest);
        Assert.Contains(message, doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Grpc_trace_settings_update_and_refuse_as_http_does()
    {
        var request = new TraceSettingRequest();
        request.Settings.Add("trace_count", new TraceSettingRequest.Types.SettingValue { Value = { "5" } });
        var response = await _grpc.TraceSettingAsync(request, cancellationToken: Ct);
        Assert.Equal(["5"], response.Settings["trace_count"].Value);
        var bad = new TraceSettingRequest();
        bad.Settings.Add("trace_level", new TraceSettingRequest.Types.SettingValue { Value = { "LOUD" } });
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.TraceSettingAsync(bad, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        var unknown = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.TraceSettingAsync(new TraceSettingRequest { ModelName = "nope" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task Log_settings_change_live_over_both_protocols()
    {
        using (var before = await SendAsync(HttpMethod.Get, "/v2/logging", null, HttpStatusCode.OK))
        {
            Assert.True(before.RootElement.GetProperty("log_info").GetBoolean());
            Assert.Equal("default", before.RootElement.GetProperty("log_format").GetString());
        }

        using (var after = await SendAsync(HttpMethod.Post, "/v2/logging", "{\"log_info\": false, \"log_verbose_level\": 1, \"log_format\": \"ISO8601\"}", HttpStatusCode.OK))
        {
            Assert.False(after.RootElement.GetProperty("log_info").GetBoolean());
            Assert.Equal(1, after.RootElement.GetProperty("log_verbose_level").GetInt32());
        }

        Assert.True(_server.Options.Logs.Allows("Microsoft.AspNetCore.Hosting", Microsoft.Extensions.Logging.LogLevel.Information));
        Assert.False(_server.Options.Logs.Allows("Batchwise.Server", Microsoft.Extensions.Logging.LogLevel.Information));
        var request = new LogSettingsRequest();
        request.Settings.Add("log_verbose_level", new LogSettingsRequest.Types.SettingValue { Uint32Param = 0 });
        var grpc = await _grpc.LogSettingsAsync(request, cancellationToken: Ct);
        Assert.Equal(0U, grpc.Settings["log_verbose_level"].Uint32Param);
        Assert.Equal("ISO8601", grpc.Settings["log_format"].StringParam);
        using var bad = await SendAsync(HttpMethod.Post, "/v2/logging", "{\"log_format\": \"xml\"}", HttpStatusCode.BadRequest);
        Assert.Contains("log_format must be", bad.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    private async Task<JsonDocument> SendAsync(HttpMethod method, string path, string? body, HttpStatusCode status)
    {
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await _http.SendAsync(request, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(status == response.StatusCode, text);
        return JsonDocument.Parse(text);
    }
}
