using System.Globalization;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Batchwise.Server.Tests;

public sealed class HttpEndpointTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _http = fixture.Http;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Server_metadata_names_the_server_and_the_binary_extension()
    {
        using var doc = await GetJsonAsync("/v2", HttpStatusCode.OK);
        Assert.Equal("batchwise", doc.RootElement.GetProperty("name").GetString());
        Assert.Contains("binary_tensor_data", doc.RootElement.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));
    }

    [Theory]
    [InlineData("/v2/health/live")]
    [InlineData("/v2/health/ready")]
    [InlineData("/v2/models/mlp/ready")]
    [InlineData("/v2/models/mlp/versions/1/ready")]
    public async Task Health_and_readiness_answer_200(string path)
    {
        using var response = await _http.GetAsync(new Uri(path, UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("/v2/models/mlp")]
    [InlineData("/v2/models/mlp/versions/1")]
    public async Task Model_metadata_lists_inputs_and_outputs_with_dynamic_dims_as_minus_one(string path)
    {
        using var doc = await GetJsonAsync(path, HttpStatusCode.OK);
        var root = doc.RootElement;
        Assert.Equal("mlp", root.GetProperty("name").GetString());
        Assert.Equal("1", root.GetProperty("versions")[0].GetString());
        var input = root.GetProperty("inputs")[0];
        Assert.Equal("input", input.GetProperty("name").GetString());
        Assert.Equal("FP32", input.GetProperty("datatype").GetString());
        Assert.Equal([-1L, 64L], input.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
        Assert.Equal("probabilities", root.GetProperty("outputs")[0].GetProperty("name").GetString());
    }

    [Theory]
    [InlineData("/v2/models/nope", "Unknown model 'nope'")]
    [InlineData("/v2/models/nope/ready", "Unknown model 'nope'")]
    [InlineData("/v2/models/mlp/versions/7", "no version '7'")]
    [InlineData("/v2/models/mlp/versions/7/ready", "no version '7'")]
    public async Task Unknown_model_or_version_is_404_with_the_protocol_error(string path, string message)
    {
        using var doc = await GetJsonAsync(path, HttpStatusCode.NotFound);
        Assert.Contains(message, doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Model_config_reports_the_batching_settings()
    {
        using var doc = await GetJsonAsync("/v2/models/mlp/config", HttpStatusCode.OK);
        Assert.Equal(8, doc.RootElement.GetProperty("max_batch_size").GetInt32());
        Assert.Equal([64L], doc.RootElement.GetProperty("input")[0].GetProperty("dims").EnumerateArray().Select(d => d.GetInt64()).ToArray());
        Assert.Equal(200, doc.RootElement.GetProperty("dynamic_batching").GetProperty("max_queue_delay_microseconds").GetInt64());
    }

    [Fact]
    public async Task Model_config_names_triton_backend_and_platform_and_keeps_the_engine_in_parameters()
    {
        using var doc = await GetJsonAsync("/v2/models/mlp/config", HttpStatusCode.OK);
        var root = doc.RootElement;
        Assert.Equal("onnxruntime", root.GetProperty("backend").GetString());
        Assert.Equal("onnxruntime_onnx", root.GetProperty("platform").GetString());
        Assert.Equal("ort", root.GetProperty("parameters").GetProperty("batchwise_engine").GetProperty("string_value").GetString());
        Assert.Equal("TYPE_FP32", root.GetProperty("input")[0].GetProperty("data_type").GetString());
        Assert.Equal(JsonValueKind.Number, root.GetProperty("output")[0].GetProperty("dims")[0].ValueKind);
        Assert.Equal("KIND_CPU", root.GetProperty("instance_group")[0].GetProperty("kind").GetString());
    }

    [Theory]
    [InlineData("GET", "/v2/nothing/here", HttpStatusCode.NotFound, "Not Found")]
    [InlineData("GET", "/v3", HttpStatusCode.NotFound, "Not Found")]
    [InlineData("POST", "/v2/health/live", HttpStatusCode.MethodNotAllowed, "Method Not Allowed")]
    [InlineData("GET", "/v2/models/mlp/infer", HttpStatusCode.MethodNotAllowed, "Method Not Allowed")]
    public async Task Unknown_routes_and_wrong_methods_answer_with_the_protocol_error(string method, string path, HttpStatusCode status, string message)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), new Uri(path, UriKind.Relative));
        using var response = await _http.SendAsync(request, Ct);
        Assert.Equal(status, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        Assert.StartsWith(message, doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_infer_with_flat_data_matches_the_engine()
    {
        var input = ServerFixture.Input(3);
        var body = JsonSerializer.Serialize(new { id = "r1", inputs = new[] { new { name = "input", shape = new[] { 3, 64 }, datatype = "FP32", data = input } } });
        using var doc = await PostJsonAsync("/v2/models/mlp/infer", body, HttpStatusCode.OK);
        var output = doc.RootElement.GetProperty("outputs")[0];
        Assert.Equal("r1", doc.RootElement.GetProperty("id").GetString());
        Assert.Equal("probabilities", output.GetProperty("name").GetString());
        Assert.Equal([3L, 10L], output.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
        var values = output.GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        Assert.Equal(ServerFixture.Expected(input, 3), values, (a, b) => Math.Abs(a - b) < 1e-6f);
    }

    [Fact]
    public async Task Json_infer_with_nested_data_and_a_version_matches_the_engine()
    {
        var input = ServerFixture.Input(2, seed: 5);
        var nested = new[] { input[..64], input[64..] };
        var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { 2, 64 }, datatype = "FP32", data = nested } } });
        using var doc = await PostJsonAsync("/v2/models/mlp/versions/1/infer", body, HttpStatusCode.OK);
        var values = doc.RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        Assert.Equal(ServerFixture.Expected(input, 2), values, (a, b) => Math.Abs(a - b) < 1e-6f);
    }

    [Fact]
    public async Task Binary_inputs_and_outputs_follow_the_binary_tensor_data_extension()
    {
        var input = ServerFixture.Input(4, seed: 9);
        var header = JsonSerializer.Serialize(new
        {
            inputs = new[] { new { name = "input", shape = new[] { 4, 64 }, datatype = "FP32", parameters = new { binary_data_size = 4 * 64 * 4 } } },
            outputs = new[] { new { name = "probabilities", parameters = new { binary_data = true } } },
        });
        using var response = await PostBinaryAsync("/v2/models/mlp/infer", header, MemoryMarshal.AsBytes(input.AsSpan()).ToArray());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var jsonLength = int.Parse(response.Headers.GetValues("Inference-Header-Content-Length").Single(), CultureInfo.InvariantCulture);
        var bytes = await response.Content.ReadAsByteArrayAsync(Ct);
        using var doc = JsonDocument.Parse(bytes.AsMemory(0, jsonLength));
        var output = doc.RootElement.GetProperty("outputs")[0];
        Assert.Equal(4 * 10 * 4, output.GetProperty("parameters").GetProperty("binary_data_size").GetInt32());
        Assert.False(output.TryGetProperty("data", out _));
        var values = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(jsonLength)).ToArray();
        Assert.Equal(ServerFixture.Expected(input, 4), values, (a, b) => Math.Abs(a - b) < 1e-6f);
    }

    [Fact]
    public async Task Binary_data_output_parameter_returns_every_output_as_bytes()
    {
        var body = JsonSerializer.Serialize(new { parameters = new { binary_data_output = true }, inputs = new[] { new { name = "input", shape = new[] { 1, 64 }, datatype = "FP32", data = ServerFixture.Input(1) } } });
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), content, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var jsonLength = int.Parse(response.Headers.GetValues("Inference-Header-Content-Length").Single(), CultureInfo.InvariantCulture);
        Assert.Equal(jsonLength + 40, (await response.Content.ReadAsByteArrayAsync(Ct)).Length);
    }

    [Theory]
    [InlineData("{\"inputs\":[{\"name\":\"x\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[]}]}", "has no input 'x'")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"INT64\",\"data\":[]}]}", "expects FP32")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,63],\"datatype\":\"FP32\",\"data\":[]}]}", "expects [-1, 64]")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[64],\"datatype\":\"FP32\",\"data\":[]}]}", "expects [-1, 64]")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[9,64],\"datatype\":\"FP32\",\"data\":[]}]}", "takes 1 to 8")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[1,2,3]}]}", "has 3 values")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[\"a\",1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}", "is not a FP32 value")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP99\",\"data\":[]}]}", "unknown datatype 'FP99'")]
    [InlineData("{\"inputs\":[]}", "Input 'input' is missing")]
    [InlineData("{\"inputs\":[{\"name\":\"input\"", "not valid JSON")]
    [InlineData("[1,2]", "must be a JSON object")]
    [InlineData("{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[]}],\"outputs\":[{\"name\":\"logits\"}]}", "has no output 'logits'")]
    public async Task Bad_requests_get_400_with_an_error_naming_the_problem(string body, string message)
    {
        using var doc = await PostJsonAsync("/v2/models/mlp/infer", body, HttpStatusCode.BadRequest);
        Assert.Contains(message, doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        await Server_still_serves();
    }

    [Fact]
    public async Task Binary_data_of_the_wrong_size_is_400()
    {
        var header = JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { 1, 64 }, datatype = "FP32", parameters = new { binary_data_size = 255 } } } });
        using var response = await PostBinaryAsync("/v2/models/mlp/infer", header, new byte[255]);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("has 255 bytes of data; FP32 [1, 64] needs 256", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        using var extra = await PostBinaryAsync("/v2/models/mlp/infer", header.Replace("255", "256", StringComparison.Ordinal), new byte[300]);
        Assert.Equal(HttpStatusCode.BadRequest, extra.StatusCode);
        Assert.Contains("300 bytes of binary data", await extra.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("deflate")]
    public async Task A_compressed_request_is_inflated_and_the_response_compressed_when_accepted(string encoding)
    {
        var input = ServerFixture.Input(2, seed: 31);
        var body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { 2, 64 }, datatype = "FP32", data = input } } }));
        using var packed = new MemoryStream();
        using (Stream z = encoding == "gzip" ? new GZipStream(packed, CompressionLevel.Optimal, leaveOpen: true) : new ZLibStream(packed, CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(body);
        }

        using var content = new ByteArrayContent(packed.ToArray());
        content.Headers.ContentEncoding.Add(encoding);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("/v2/models/mlp/infer", UriKind.Relative)) { Content = content };
        request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue(encoding));
        using var response = await _http.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(encoding, Assert.Single(response.Content.Headers.ContentEncoding));
        var raw = await response.Content.ReadAsByteArrayAsync(Ct);
        using var inflate = encoding == "gzip" ? (Stream)new GZipStream(new MemoryStream(raw), CompressionMode.Decompress) : new ZLibStream(new MemoryStream(raw), CompressionMode.Decompress);
        using var doc = await JsonDocument.ParseAsync(inflate, cancellationToken: Ct);
        var values = doc.RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        Assert.Equal(ServerFixture.Expected(input, 2), values);
    }

    [Theory]
    [InlineData("br", new byte[] { 1, 2, 3 }, "Content-Encoding 'br' is not supported")]
    [InlineData("gzip", new byte[] { 0x1f, 0x8b, 0, 0 }, "is not valid gzip data")]
    public async Task A_request_in_an_unknown_or_broken_encoding_is_400(string encoding, byte[] body, string message)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentEncoding.Add(encoding);
        using var response = await _http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), content, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(message, await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_compressed_body_that_inflates_past_the_limit_is_413()
    {
        using var packed = new MemoryStream();
        using (var z = new GZipStream(packed, CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(new byte[ServerFixture.MaxBody * 4]);
        }

        using var content = new ByteArrayContent(packed.ToArray());
        content.Headers.ContentEncoding.Add("gzip");
        using var response = await _http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), content, Ct);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("inflates past the server's limit", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Infer_on_an_unknown_model_is_404()
    {
        using var doc = await PostJsonAsync("/v2/models/resnet/infer", "{\"inputs\":[]}", HttpStatusCode.NotFound);
        Assert.Contains("Unknown model 'resnet'", doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_413()
    {
        using var response = await PostBinaryAsync("/v2/models/mlp/infer", "{\"inputs\":[]}", new byte[ServerFixture.MaxBody + 1]);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("--max-body-size", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        await Server_still_serves();
    }

    private async Task Server_still_serves()
    {
        var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", shape = new[] { 1, 64 }, datatype = "FP32", data = ServerFixture.Input(1) } } });
        using var doc = await PostJsonAsync("/v2/models/mlp/infer", body, HttpStatusCode.OK);
        Assert.Equal(10, doc.RootElement.GetProperty("outputs")[0].GetProperty("data").GetArrayLength());
    }

    private async Task<JsonDocument> GetJsonAsync(string path, HttpStatusCode expected)
    {
        using var response = await _http.GetAsync(new Uri(path, UriKind.Relative), Ct);
        Assert.Equal(expected, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
    }

    private async Task<JsonDocument> PostJsonAsync(string path, string body, HttpStatusCode expected)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri(path, UriKind.Relative), content, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(text);
    }

    private async Task<HttpResponseMessage> PostBinaryAsync(string path, string header, byte[] binary)
    {
        var headerBytes = Encoding.UTF8.GetBytes(header);
        var content = new ByteArrayContent([.. headerBytes, .. binary]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", headerBytes.Length.ToString(CultureInfo.InvariantCulture));
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(path, UriKind.Relative)) { Content = content };
        return await _http.SendAsync(request, Ct);
    }
}
