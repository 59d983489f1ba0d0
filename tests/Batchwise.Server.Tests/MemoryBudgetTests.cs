using System.Net;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>Tests that measure the process's allocations run alone, so other tests' allocations do not count.</summary>
[CollectionDefinition(nameof(MeasuredMemory), DisableParallelization = true)]
public sealed class MeasuredMemory;

/// <summary>
/// D1: a request of 87 bytes claiming a [1, 500000000] FP32 tensor must not make the server allocate it; and the
/// per-request and server-wide byte budgets refuse with 413 / 503 / RESOURCE_EXHAUSTED naming the flag.
/// </summary>
[Collection(nameof(MeasuredMemory))]
public sealed class MemoryBudgetTests : IClassFixture<HardeningFixture>
{
    private const string LyingRequest = """{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 500000000], "data": [1.0]}]}""";
    private readonly HardeningFixture _fixture;

    public MemoryBudgetTests(HardeningFixture fixture) => _fixture = fixture;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void The_87_byte_request_is_refused_by_the_decoder_without_allocating_its_claim()
    {
        Assert.Equal(87, Encoding.UTF8.GetByteCount(LyingRequest));
        var model = _fixture.Server.Models.Find("dyn");
        var body = Encoding.UTF8.GetBytes(LyingRequest);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InferenceError>(() =>
        {
            using var lease = _fixture.Server.Admission.Admit();
            using var doc = HttpEndpoints.ParseJson(body, lease);
            HttpEndpoints.ParseRequest(doc.RootElement, ReadOnlyMemory<byte>.Empty, model, lease);
        });
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(400, e.HttpStatus);
        Assert.True(allocated < 64 * 1024, $"the decoder allocated {allocated} bytes for an 87-byte request");
    }

    [Fact]
    public void The_32_byte_grpc_message_is_refused_by_the_decoder_without_allocating_its_claim()
    {
        var request = new ModelInferRequest { ModelName = "dyn" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Contents = new InferTensorContents() };
        input.Shape.AddRange([1, 500_000_000]);
        input.Contents.Fp32Contents.Add(1f);
        request.Inputs.Add(input);
        Assert.True(request.CalculateSize() < 40);
        var model = _fixture.Server.Models.Find("dyn");
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InferenceError>(() =>
        {
            using var lease = _fixture.Server.Admission.Admit();
            GrpcInferenceEndpoint.Decode(request, model, lease);
        });
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(StatusCode.InvalidArgument, e.GrpcStatus);
        Assert.True(allocated < 64 * 1024, $"the decoder allocated {allocated} bytes for a {request.CalculateSize()}-byte message");
    }

    [Fact]
    public async Task Repeated_lying_requests_do_not_make_the_live_server_allocate()
    {
        using var channel = GrpcChannel.ForAddress(_fixture.Server.GrpcAddress);
        var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var message = new ModelInferRequest { ModelName = "dyn" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Contents = new InferTensorContents() };
        input.Shape.AddRange([1, 500_000_000]);
        input.Contents.Fp32Contents.Add(1f);
        message.Inputs.Add(input);
        await SendAsync(); // warm both protocols' paths up

        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var round = 0; round < 4; round++)
        {
            await SendAsync();
        }

        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        TestContext.Current.SendDiagnosticMessage($"16 lying requests (8 HTTP, 8 gRPC), each claiming 2,000,000,000 bytes: the process allocated {allocated:N0} bytes");

        // Each claim is 2 GB; 4 rounds of 2 HTTP + 2 gRPC requests would be 32 GB if the tensors were allocated.
        Assert.True(allocated < 64L << 20, $"the server process allocated {allocated:N0} bytes for 16 requests of under 100 bytes");
        Assert.Equal(0, _fixture.Server.Admission.HeldBytes);

        async Task SendAsync()
        {
            var calls = new List<Task>();
            for (var i = 0; i < 2; i++)
            {
                calls.Add(ExpectHttpAsync());
                calls.Add(ExpectGrpcAsync());
            }

            await Task.WhenAll(calls);
        }

        async Task ExpectHttpAsync()
        {
            using var content = new StringContent(LyingRequest, Encoding.UTF8, "application/json");
            using var response = await _fixture.Http.PostAsync(new Uri("/v2/models/dyn/infer", UriKind.Relative), content, Ct);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        }

        async Task ExpectGrpcAsync()
        {
            var e = await Assert.ThrowsAsync<RpcException>(async () => await grpc.ModelInferAsync(message, cancellationToken: Ct));
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        }
    }

    [Fact]
    public async Task A_request_over_max_request_bytes_is_413_over_http_and_resource_exhausted_over_grpc_with_the_same_words()
    {
        var models = new ModelRepository();
        var dir = Directory.CreateTempSubdirectory("bw-budget-");
        try
        {
            var path = Path.Combine(dir.FullName, "dyn.onnx");
            HardeningFixture.DynamicModel().Save(path);
            models.Add("dyn", path, new ModelConfig { MaxBatchSize = 4 });
            await using var server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, MaxRequestBytes = 64 * 1024 }, Ct);
            using var http = new HttpClient { BaseAddress = server.HttpAddress };
            var values = Enumerable.Repeat(0.5f, 20_000).ToArray();
            var body = JsonSerializer.Serialize(new { inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 1, values.Length }, data = values } } });
            using var response = await http.PostAsync(new Uri("/v2/models/dyn/infer", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"), Ct);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
            using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
            var httpMessage = doc.RootElement.GetProperty("error").GetString()!;
            Assert.Contains("80,000 bytes", httpMessage, StringComparison.Ordinal);
            Assert.Contains("--max-request-bytes", httpMessage, StringComparison.Ordinal);

            using var channel = GrpcChannel.ForAddress(server.GrpcAddress);
            var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
            var request = new ModelInferRequest { ModelName = "dyn" };
            var input = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Contents = new InferTensorContents() };
            input.Shape.AddRange([1, values.Length]);
            input.Contents.Fp32Contents.AddRange(values);
            request.Inputs.Add(input);
            var e = await Assert.ThrowsAsync<RpcException>(async () => await grpc.ModelInferAsync(request, cancellationToken: Ct));
            Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
            Assert.Equal(httpMessage, e.Status.Detail);
            Assert.Equal(0, server.Admission.HeldBytes);
            Assert.Equal(0, server.Admission.InFlight);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
