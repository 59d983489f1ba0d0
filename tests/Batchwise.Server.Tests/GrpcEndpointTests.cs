using System.Runtime.InteropServices;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

public sealed class GrpcEndpointTests : IClassFixture<ServerFixture>, IDisposable
{
    private readonly GrpcChannel _channel;
    private readonly GRPCInferenceService.GRPCInferenceServiceClient _client;

    public GrpcEndpointTests(ServerFixture fixture)
    {
        _channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        _client = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _channel.Dispose();

    [Fact]
    public async Task Health_and_server_metadata()
    {
        Assert.True((await _client.ServerLiveAsync(new ServerLiveRequest(), cancellationToken: Ct)).Live);
        Assert.True((await _client.ServerReadyAsync(new ServerReadyRequest(), cancellationToken: Ct)).Ready);
        Assert.True((await _client.ModelReadyAsync(new ModelReadyRequest { Name = "mlp" }, cancellationToken: Ct)).Ready);
        Assert.True((await _client.ModelReadyAsync(new ModelReadyRequest { Name = "mlp", Version = "1" }, cancellationToken: Ct)).Ready);
        var server = await _client.ServerMetadataAsync(new ServerMetadataRequest(), cancellationToken: Ct);
        Assert.Equal("batchwise", server.Name);
        Assert.Contains("binary_tensor_data", server.Extensions);
    }

    [Fact]
    public async Task Model_metadata()
    {
        var m = await _client.ModelMetadataAsync(new ModelMetadataRequest { Name = "mlp" }, cancellationToken: Ct);
        Assert.Equal("mlp", m.Name);
        Assert.Equal(["1"], m.Versions);
        Assert.Equal("onnxruntime_onnx", m.Platform);
        Assert.Equal("input", m.Inputs[0].Name);
        Assert.Equal("FP32", m.Inputs[0].Datatype);
        Assert.Equal([-1L, 64L], m.Inputs[0].Shape);
        Assert.Equal([-1L, 10L], m.Outputs[0].Shape);
    }

    [Fact]
    public async Task Infer_with_raw_input_contents_matches_the_engine()
    {
        var input = ServerFixture.Input(2, seed: 3);
        var request = Request(2);
        request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(input.AsSpan())));
        var response = await _client.ModelInferAsync(request, cancellationToken: Ct);
        Assert.Equal("mlp", response.ModelName);
        Assert.Equal("req-7", response.Id);
        Assert.Equal("probabilities", response.Outputs[0].Name);
        Assert.Equal([2L, 10L], response.Outputs[0].Shape);
        var values = MemoryMarshal.Cast<byte, float>(response.RawOutputContents[0].Span).ToArray();
        Assert.Equal(ServerFixture.Expected(input, 2), values, (a, b) => Math.Abs(a - b) < 1e-6f);
    }

    [Fact]
    public async Task Infer_with_typed_contents_matches_the_engine()
    {
        var input = ServerFixture.Input(1, seed: 4);
        var request = Request(1);
        request.Inputs[0].Contents = new InferTensorContents();
        request.Inputs[0].Contents.Fp32Contents.AddRange(input);
        request.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "probabilities" });
        var response = await _client.ModelInferAsync(request, cancellationToken: Ct);
        var values = MemoryMarshal.Cast<byte, float>(response.RawOutputContents[0].Span).ToArray();
        Assert.Equal(ServerFixture.Expected(input, 1), values, (a, b) => Math.Abs(a - b) < 1e-6f);
    }

    [Fact]
    public async Task Model_ready_for_an_unknown_model_or_version_is_false_not_an_error()
    {
        Assert.False((await _client.ModelReadyAsync(new ModelReadyRequest { Name = "nope" }, cancellationToken: Ct)).Ready);
        Assert.False((await _client.ModelReadyAsync(new ModelReadyRequest { Name = "mlp", Version = "7" }, cancellationToken: Ct)).Ready);
    }

    [Fact]
    public async Task Model_config_answers_with_triton_model_config()
    {
        var config = (await _client.ModelConfigAsync(new ModelConfigRequest { Name = "mlp" }, cancellationToken: Ct)).Config;
        Assert.Equal("mlp", config.Name);
        Assert.Equal("onnxruntime", config.Backend);
        Assert.Equal("onnxruntime_onnx", config.Platform);
        Assert.Equal(8, config.MaxBatchSize);
        Assert.Equal(DataType.TypeFp32, config.Input[0].DataType);
        Assert.Equal([64L], config.Input[0].Dims);
        Assert.Equal([10L], config.Output[0].Dims);
        Assert.Equal(200UL, config.DynamicBatching.MaxQueueDelayMicroseconds);
        Assert.Equal("ort", config.Parameters["batchwise_engine"].StringValue);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _client.ModelConfigAsync(new ModelConfigRequest { Name = "nope" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
    }

    [Fact]
    public async Task Stream_infer_answers_every_request_and_reports_a_failed_one_in_its_response()
    {
        using var call = _client.ModelStreamInfer(cancellationToken: Ct);
        var inputs = new Dictionary<string, float[]>();
        for (var i = 0; i < 6; i++)
        {
            var request = Request(1);
            request.Id = $"s-{i}";
            if (i == 3)
            {
                request.RawInputContents.Add(ByteString.CopyFrom(new byte[12]));
            }
            else
            {
                inputs[request.Id] = ServerFixture.Input(1, seed: 100 + i);
                request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(inputs[request.Id].AsSpan())));
            }

            await call.RequestStream.WriteAsync(request, Ct);
        }

        await call.RequestStream.CompleteAsync();
        var responses = new List<ModelStreamInferResponse>();
        await foreach (var response in call.ResponseStream.ReadAllAsync(Ct))
        {
            responses.Add(response);
        }

        Assert.Equal(6, responses.Count);
        var failed = Assert.Single(responses, r => r.ErrorMessage.Length > 0);
        Assert.Equal("s-3", failed.InferResponse.Id);
        Assert.Contains("needs 256", failed.ErrorMessage, StringComparison.Ordinal);
        foreach (var ok in responses.Where(r => r.ErrorMessage.Length == 0))
        {
            // The batcher may have merged stream requests, so compare within float rounding, not bit for bit.
            var values = MemoryMarshal.Cast<byte, float>(ok.InferResponse.RawOutputContents[0].Span).ToArray();
            var expected = ServerFixture.Expected(inputs[ok.InferResponse.Id], 1);
            Assert.All(expected.Zip(values), p => Assert.Equal(p.First, p.Second, 1e-6f));
        }
    }

    [Fact]
    public async Task Unknown_model_is_not_found()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _client.ModelMetadataAsync(new ModelMetadataRequest { Name = "nope" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        var request = Request(1);
        request.ModelName = "nope";
        e = await Assert.ThrowsAsync<RpcException>(async () => await _client.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
    }

    [Fact]
    public async Task Bad_inputs_are_invalid_argument()
    {
        var wrongSize = Request(1);
        wrongSize.RawInputContents.Add(ByteString.CopyFrom(new byte[100]));
        var e = await Assert.ThrowsAsync<RpcException>(async () => await _client.ModelInferAsync(wrongSize, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("needs 256", e.Status.Detail, StringComparison.Ordinal);

        var wrongShape = Request(1);
        wrongShape.Inputs[0].Shape[1] = 32;
        wrongShape.RawInputContents.Add(ByteString.CopyFrom(new byte[128]));
        e = await Assert.ThrowsAsync<RpcException>(async () => await _client.ModelInferAsync(wrongShape, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);

        var wrongType = Request(1);
        wrongType.Inputs[0].Datatype = "FP16";
        wrongType.RawInputContents.Add(ByteString.CopyFrom(new byte[128]));
        e = await Assert.ThrowsAsync<RpcException>(async () => await _client.ModelInferAsync(wrongType, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("expects FP32", e.Status.Detail, StringComparison.Ordinal);
    }

    private static ModelInferRequest Request(int rows)
    {
        var request = new ModelInferRequest { ModelName = "mlp", Id = "req-7" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        input.Shape.AddRange([rows, 64]);
        request.Inputs.Add(input);
        return request;
    }
}
