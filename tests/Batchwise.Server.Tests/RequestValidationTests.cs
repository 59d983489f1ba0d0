using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>
/// Hostile requests from issue 14 (D1-D4 and +Infinity), over HTTP and gRPC: each refused with a precise status and
/// the same words on both protocols, never a 500 / UNKNOWN, and the server still serves afterwards.
/// </summary>
public sealed class RequestValidationTests : IClassFixture<HardeningFixture>, IDisposable
{
    private const long TwoTo62 = 1L << 62;
    private readonly HardeningFixture _fixture;
    private readonly GrpcChannel _channel;
    private readonly GRPCInferenceService.GRPCInferenceServiceClient _grpc;

    public RequestValidationTests(HardeningFixture fixture)
    {
        _fixture = fixture;
        _channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        _grpc = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _channel.Dispose();

    [Theory]
    [InlineData("""{"inputs":[1]}""", "Each input must be an object")]
    [InlineData("""{"inputs":["x"]}""", "Each input must be an object")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}],"outputs":[1]}""", "Each requested output must be an object")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}],"parameters":{"timeout":1000000000000000000}}""", "Parameter 'timeout' is 1000000000000000000")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[8,4611686018427387904],"data":[1]}]}""", "whose element count does not fit in 64 bits")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4611686018427387904],"data":[1]}]}""", "whose size in bytes does not fit in 64 bits")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4611686018427387904],"parameters":{"binary_data_size":0}}]}""", "whose size in bytes does not fit in 64 bits")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,500000000],"data":[1.0]}]}""", "has 1 values; shape [1, 500000000] needs 500000000")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1e400]}]}""", "value 1e400 is out of range for FP32")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1e39]}]}""", "value 1e39 is out of range for FP32")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}],"parameters":{"priority":9223372036854775808}}""", "Parameter 'priority' is 9223372036854775808")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}],"parameters":{"priority":"high"}}""", "Parameter 'priority' is \"high\"")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}],"parameters":[]}""", "\"parameters\" must be an object")]
    public async Task Malformed_http_requests_are_400_with_the_protocol_error(string body, string message)
    {
        using var doc = await PostAsync("dyn", Encoding.UTF8.GetBytes(body), HttpStatusCode.BadRequest);
        Assert.Contains(message, doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        await AssertStillServesAsync();
    }

    [Fact]
    public async Task Invalid_utf8_in_a_json_string_is_400_not_500()
    {
        var body = Encoding.UTF8.GetBytes("""{"inputs":[{"name":"x?","datatype":"FP32","shape":[1,1],"data":[1]}]}""");
        body[Array.IndexOf(body, (byte)'?')] = 0xFF;
        using var doc = await PostAsync("dyn", body, HttpStatusCode.BadRequest);
        Assert.Contains("not valid UTF-8", doc.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Infinity_is_accepted_only_when_written_as_the_string_Infinity()
    {
        var body = """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":["Infinity", -1]}]}""";
        using var doc = await PostAsync("dyn", Encoding.UTF8.GetBytes(body), HttpStatusCode.OK);
        var data = doc.RootElement.GetProperty("outputs")[0].GetProperty("data");
        Assert.Equal("Infinity", data[0].GetString());
        Assert.Equal(0, data[1].GetDouble());
    }

    [Theory]
    [InlineData(8, TwoTo62, "whose element count does not fit in 64 bits")]
    [InlineData(1, TwoTo62, "whose size in bytes does not fit in 64 bits")]
    [InlineData(1, 500_000_000, "has 1 values; shape [1, 500000000] needs 500000000")]
    public async Task Grpc_typed_contents_that_lie_about_the_shape_are_invalid_argument(long rows, long columns, string message)
    {
        var request = DynRequest([rows, columns], [1f]);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(message, e.Status.Detail, StringComparison.Ordinal);
        await AssertStillServesAsync();
    }

    [Fact]
    public async Task Grpc_raw_contents_with_an_overflowing_shape_and_no_bytes_are_invalid_argument()
    {
        var request = new ModelInferRequest { ModelName = "dyn" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32" };
        input.Shape.AddRange([1, TwoTo62]);
        request.Inputs.Add(input);
        request.RawInputContents.Add(ByteString.Empty);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("does not fit in 64 bits", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Grpc_int16_value_out_of_range_is_invalid_argument()
    {
        var request = new ModelInferRequest { ModelName = "i16" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "k", Datatype = "INT16", Contents = new InferTensorContents() };
        input.Shape.AddRange([1, 4]);
        input.Contents.IntContents.AddRange([1, 2, 40000, 4]);
        request.Inputs.Add(input);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("value 40000 is out of range for INT16", e.Status.Detail, StringComparison.Ordinal);

        input.Contents.IntContents[2] = -32768;
        var ok = await _grpc.ModelInferAsync(request, cancellationToken: Ct);
        Assert.Equal(new short[] { 1, 2, -32768, 4 }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, short>(ok.RawOutputContents[0].Span).ToArray());
    }

    public static TheoryData<string, InferParameter, string> OutOfRangeParameters => new()
    {
        { "priority", new InferParameter { Uint64Param = 1UL << 63 }, "Parameter 'priority' is 9223372036854775808" },
        { "priority", new InferParameter { Uint64Param = (1UL << 32) + 1 }, "Parameter 'priority' is 4294967297" },
        { "priority", new InferParameter { Int64Param = -1 }, "Parameter 'priority' is -1" },
        { "priority", new InferParameter { StringParam = "high" }, "Parameter 'priority' is \"high\"" },
        { "timeout", new InferParameter { Uint64Param = ulong.MaxValue }, "Parameter 'timeout' is 18446744073709551615" },
        { "timeout", new InferParameter { Int64Param = 1_000_000_000_000_000_000 }, "Parameter 'timeout' is 1000000000000000000" },
        { "timeout", new InferParameter { Int64Param = -5 }, "Parameter 'timeout' is -5" },
    };

    [Theory]
    [MemberData(nameof(OutOfRangeParameters))]
    public async Task Grpc_out_of_range_parameters_are_refused_not_wrapped(string key, InferParameter value, string message)
    {
        var request = DynRequest([1, 1], [1f]);
        request.Parameters[key] = value;
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(message, e.Status.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[1, 500000000]", "")]
    [InlineData("[8, 4611686018427387904]", "")]
    [InlineData("[1, 1]", "\"priority\": 9223372036854775808")]
    [InlineData("[1, 1]", "\"timeout\": 1000000000000000000")]
    [InlineData("[1, 1]", "\"priority\": 3")]
    [InlineData("[9, 1]", "")]
    public async Task Both_protocols_refuse_with_the_same_words(string shape, string parameter)
    {
        var dims = JsonSerializer.Deserialize<long[]>(shape)!;
        var body = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":" + shape + ",\"data\":[1]}],\"parameters\":{" + parameter + "}}";
        using var doc = await PostAsync("dyn", Encoding.UTF8.GetBytes(body), HttpStatusCode.BadRequest);
        var httpMessage = doc.RootElement.GetProperty("error").GetString();

        var request = DynRequest(dims, [1f]);
        if (parameter.Length > 0)
        {
            var (key, value) = (parameter.Split(':')[0].Trim(' ', '"'), ulong.Parse(parameter.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
            request.Parameters[key] = new InferParameter { Uint64Param = value };
        }

        var e = await Assert.ThrowsAsync<RpcException>(async () => await _grpc.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal(httpMessage, e.Status.Detail);
    }

    private static ModelInferRequest DynRequest(long[] shape, float[] values)
    {
        var request = new ModelInferRequest { ModelName = "dyn" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Contents = new InferTensorContents() };
        input.Shape.AddRange(shape);
        input.Contents.Fp32Contents.AddRange(values);
        request.Inputs.Add(input);
        return request;
    }

    private async Task<JsonDocument> PostAsync(string model, byte[] body, HttpStatusCode expected)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var response = await _fixture.Http.PostAsync(new Uri($"/v2/models/{model}/infer", UriKind.Relative), content, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text);
    }

    private async Task AssertStillServesAsync()
    {
        var response = await _grpc.ModelInferAsync(DynRequest([1, 3], [-1f, 0f, 2f]), cancellationToken: Ct);
        Assert.Equal(new float[] { 0, 0, 2 }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(response.RawOutputContents[0].Span).ToArray());
        using var doc = await PostAsync("dyn", Encoding.UTF8.GetBytes("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[-3, 4]}]}"""), HttpStatusCode.OK);
        Assert.Equal(4, doc.RootElement.GetProperty("outputs")[0].GetProperty("data")[1].GetDouble());
    }
}
