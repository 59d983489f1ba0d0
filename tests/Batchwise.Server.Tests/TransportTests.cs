using System.Globalization;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>A real server serving zoo:transport (issue 12's trivial model: float32 [1,3,224,224] in, per-channel means out).</summary>
public class TransportFixture : IAsyncLifetime
{
    public const int Channels = 3;
    public const int Side = 224;
    public const int Payload = Channels * Side * Side * sizeof(float); // 602,112 bytes

    public InferenceServer Server { get; private set; } = null!;

    public HttpClient Http { get; private set; } = null!;

    public GrpcChannel Channel { get; private set; } = null!;

    public GRPCInferenceService.GRPCInferenceServiceClient Grpc { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        // Two instances and a short queue delay: concurrent requests run side by side and are merged into batches, so the
        // merge/split paths and the pooled buffers' reuse are all exercised.
        models.Add("transport", "zoo:transport", new ModelConfig { MaxBatchSize = 8, InstanceCount = 2, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 300 } });
        Server = await InferenceServer.StartAsync(models, Options);
        Http = new HttpClient { BaseAddress = Server.HttpAddress, Timeout = TimeSpan.FromSeconds(30) };
        Channel = GrpcChannel.ForAddress(Server.GrpcAddress);
        Grpc = new GRPCInferenceService.GRPCInferenceServiceClient(Channel);
    }

    /// <summary>How the server is started.</summary>
    protected virtual ServerOptions Options => new() { HttpPort = 0, GrpcPort = 0, MetricsPort = 0 };

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        Channel.Dispose();
        await Server.DisposeAsync();
    }

    /// <summary>Request <paramref name="id"/>'s image: channel c holds id + c / 4 everywhere, so its means name the request.</summary>
    public static byte[] Image(int id)
    {
        var values = new float[Channels * Side * Side];
        for (var c = 0; c < Channels; c++)
        {
            values.AsSpan(c * Side * Side, Side * Side).Fill(id + (c / 4f));
        }

        return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    /// <summary>What request <paramref name="id"/> must get back.</summary>
    public static float[] Expected(int id) => [.. Enumerable.Range(0, Channels).Select(c => id + (c / 4f))];

    /// <summary>An HTTP request body for <paramref name="image"/>: the JSON header, then the image's bytes (binary data).</summary>
    public static (byte[] Body, int HeaderLength) HttpBody(byte[] image)
    {
        var header = Encoding.UTF8.GetBytes(
            """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3,224,224],"parameters":{"binary_data_size":"""
            + image.Length.ToString(CultureInfo.InvariantCulture)
            + """}}],"outputs":[{"name":"mean","parameters":{"binary_data":true}}]}""");
        var body = new byte[header.Length + image.Length];
        header.CopyTo(body, 0);
        image.CopyTo(body, header.Length);
        return (body, header.Length);
    }

    /// <summary>One HTTP request with binary input and output data (a body made by <see cref="HttpBody"/>); returns the means.</summary>
    public async Task<float[]> InferHttpAsync((byte[] Body, int HeaderLength) request, CancellationToken cancellationToken)
    {
        var (body, headerLength) = request;
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add(HttpEndpoints.HeaderLength, headerLength.ToString(CultureInfo.InvariantCulture));
        using var response = await Http.PostAsync(new Uri("/v2/models/transport/infer", UriKind.Relative), content, cancellationToken);
        var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        Assert.True(response.IsSuccessStatusCode, Encoding.UTF8.GetString(bytes));
        var jsonLength = int.Parse(response.Headers.GetValues(HttpEndpoints.HeaderLength).Single(), CultureInfo.InvariantCulture);
        using var doc = JsonDocument.Parse(bytes.AsMemory(0, jsonLength));
        Assert.Equal(Channels * sizeof(float), doc.RootElement.GetProperty("outputs")[0].GetProperty("parameters").GetProperty("binary_data_size").GetInt32());
        return MemoryMarshal.Cast<byte, float>(bytes.AsSpan(jsonLength)).ToArray();
    }

    /// <summary>One gRPC request with raw input contents (deadline 30 s); returns the means.</summary>
    public async Task<float[]> InferGrpcAsync(ByteString image, CancellationToken cancellationToken)
    {
        var request = new ModelInferRequest { ModelName = "transport" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        input.Shape.AddRange([1, Channels, Side, Side]);
        request.Inputs.Add(input);
        request.RawInputContents.Add(image);
        var response = await Grpc.ModelInferAsync(request, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: cancellationToken);
        return MemoryMarshal.Cast<byte, float>(response.RawOutputContents[0].Span).ToArray();
    }

    /// <summary>The same gRPC request over the load generator's own HTTP/2 connection (frames as large as the server allows); returns the means.</summary>
    internal async Task<float[]> InferFramesAsync(Batchwise.Server.Load.Http2UnaryConnection connection, byte[] image, CancellationToken cancellationToken)
    {
        var request = new ModelInferRequest { ModelName = "transport" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32" };
        input.Shape.AddRange([1, Channels, Side, Side]);
        request.Inputs.Add(input);
        request.RawInputContents.Add(UnsafeByteOperations.UnsafeWrap(image));
        using var response = new MemoryStream();
        var outcome = await connection.CallAsync($"{Server.GrpcAddress.Host}:{Server.GrpcAddress.Port}", "/inference.GRPCInferenceService/ModelInfer", request.ToByteArray(), cancellationToken, response);
        Assert.True(outcome.Ok, outcome.Error);
        return MemoryMarshal.Cast<byte, float>(ModelInferResponse.Parser.ParseFrom(response.ToArray()).RawOutputContents[0].Span).ToArray();
    }
}

/// <summary>
/// Issue 12's lean data path: requests of 602 KB through the real Kestrel pipeline allocate well under their own size
/// (inputs read into pooled buffers or used in place), and pooled buffers never cross into another request's answer.
/// </summary>
[Collection(nameof(MeasuredMemory))]
public sealed class TransportTests(TransportFixture fixture) : IClassFixture<TransportFixture>
{
    /// <summary>
    /// gRPC: managed bytes allocated per request must stay under this share of the payload. raw_input_contents is read
    /// into pooled buffers (GrpcInferRequestReader: 0.19-0.26x measured alone, client included), so no array of the
    /// payload's size is allocated; before, protobuf's ByteString took 1x and, earlier still, a second copy made it 2.27x
    /// (1,368,913 bytes). The bound leaves room for what an earlier test class leaves behind in the same process (after
    /// RequestFuzzTests: 0.69-0.78x gRPC, and HTTP 0.51-0.79x, which fails HTTP's bound on main as well).
    /// </summary>
    private const double AllocationBound = 1.0;

    /// <summary>
    /// HTTP binary data: the inputs are read into pooled buffers, so a request allocates only a small fraction of its
    /// payload (0.12x measured); before, the body and a copy of it made it 2.13x (1,280,160 bytes).
    /// </summary>
    private const double HttpAllocationBound = 0.5;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Http_binary_requests_allocate_less_than_half_their_payload()
    {
        var body = TransportFixture.HttpBody(TransportFixture.Image(5));
        var perRequest = await AllocatedPerRequestAsync(() => fixture.InferHttpAsync(body, Ct));
        TestContext.Current.TestOutputHelper?.WriteLine($"{perRequest:N0} bytes allocated per HTTP request of {TransportFixture.Payload:N0}");
        Assert.True(perRequest < HttpAllocationBound * TransportFixture.Payload, $"{perRequest:N0} bytes allocated per HTTP request of {TransportFixture.Payload:N0} (client and server, one process)");
    }

    [Fact]
    public async Task Grpc_raw_requests_allocate_less_than_their_payload()
    {
        var image = ByteString.CopyFrom(TransportFixture.Image(6));
        var perRequest = await AllocatedPerRequestAsync(() => fixture.InferGrpcAsync(image, Ct));
        TestContext.Current.TestOutputHelper?.WriteLine($"{perRequest:N0} bytes allocated per gRPC request of {TransportFixture.Payload:N0}");
        Assert.True(perRequest < AllocationBound * TransportFixture.Payload, $"{perRequest:N0} bytes allocated per gRPC request of {TransportFixture.Payload:N0} (client and server, one process)");
    }

    [Fact]
    public Task Concurrent_requests_over_http_and_grpc_each_get_their_own_answer() => EachGetsItsOwnAnswerAsync(fixture, Ct);

    /// <summary>
    /// 18 clients, a third each HTTP, gRPC (Grpc.Net.Client) and gRPC over the load generator's own HTTP/2 connection
    /// (one each), 12 requests each, every request a different image: with pooled buffers handed back too early, outputs
    /// split to the wrong request of a batch, or a response read off the wrong stream, some answer would be another's means.
    /// </summary>
    internal static async Task EachGetsItsOwnAnswerAsync(TransportFixture fixture, CancellationToken ct)
    {
        const int clients = 18, each = 12;
        string Kind(int client) => (client % 3) switch { 0 => "http", 1 => "grpc", _ => "grpc frames" };
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(
            async () =>
            {
                using var connection = client % 3 == 2 ? await Batchwise.Server.Load.Http2UnaryConnection.OpenAsync(fixture.Server.GrpcAddress.Host, fixture.Server.GrpcAddress.Port, ct) : null;
                for (var k = 0; k < each; k++)
                {
                    var id = (client * each) + k + 1;
                    var image = TransportFixture.Image(id);
                    var got = (client % 3) switch
                    {
                        0 => await fixture.InferHttpAsync(TransportFixture.HttpBody(image), ct),
                        1 => await fixture.InferGrpcAsync(ByteString.CopyFrom(image), ct),
                        _ => await fixture.InferFramesAsync(connection!, image, ct),
                    };
                    var want = TransportFixture.Expected(id);
                    if (got.Length != want.Length || got.Zip(want).Any(p => Math.Abs(p.First - p.Second) > 1e-3 * Math.Max(1, Math.Abs(p.Second))))
                    {
                        failures.Add($"request {id} ({Kind(client)}) got [{string.Join(", ", got)}], expected [{string.Join(", ", want)}]");
                    }
                }
            },
            ct))).WaitAsync(TimeSpan.FromSeconds(60), ct);
        Assert.Empty(failures);
    }

    /// <summary>
    /// Managed bytes the whole process allocates per call (client and server: an upper bound on the server's share),
    /// after a warm-up; the collection runs alone, so other tests do not count.
    /// </summary>
    private static async Task<double> AllocatedPerRequestAsync(Func<Task<float[]>> call)
    {
        for (var i = 0; i < 16; i++)
        {
            await call();
        }

        // The counter is process-wide: anything else running (a timer, the thread pool growing) only adds to it, so the
        // least of three rounds is the request path's own cost.
        const int n = 48;
        var least = double.MaxValue;
        for (var round = 0; round < 3; round++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < n; i++)
            {
                await call();
            }

            least = Math.Min(least, (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)n);
        }

        return least;
    }
}

/// <summary>zoo:transport served with the lone-request transport knobs all on: 1 MB receive blocks, 1 MB HTTP/2 frames, inline I/O scheduling.</summary>
public sealed class TunedTransportFixture : TransportFixture
{
    protected override ServerOptions Options => new() { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, ReceiveBlockBytes = 1 << 20, Http2MaxFrameBytes = 1 << 20, InlineIoScheduling = true };
}

/// <summary>The same checks with --receive-block-kb 1024 --http2-max-frame-kb 1024 --inline-io: no lost or crossed answers.</summary>
public sealed class TunedTransportTests(TunedTransportFixture fixture) : IClassFixture<TunedTransportFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public Task Concurrent_requests_over_http_and_grpc_each_get_their_own_answer() => TransportTests.EachGetsItsOwnAnswerAsync(fixture, Ct);

    [Fact]
    public async Task A_lone_request_of_each_kind_gets_its_answer_with_the_whole_message_in_one_frame()
    {
        using var connection = await Batchwise.Server.Load.Http2UnaryConnection.OpenAsync(fixture.Server.GrpcAddress.Host, fixture.Server.GrpcAddress.Port, Ct);
        for (var id = 1; id <= 3; id++)
        {
            var image = TransportFixture.Image(id);
            Near(id, await fixture.InferFramesAsync(connection, image, Ct));
            Near(id, await fixture.InferHttpAsync(TransportFixture.HttpBody(image), Ct));
            Near(id, await fixture.InferGrpcAsync(ByteString.CopyFrom(image), Ct));
        }

        Assert.Equal(1 << 20, connection.MaxFrameSize);
    }

    private static void Near(int id, float[] got)
    {
        var want = TransportFixture.Expected(id);
        Assert.Equal(want.Length, got.Length);
        for (var c = 0; c < want.Length; c++)
        {
            Assert.Equal(want[c], got[c], 1e-3 * Math.Max(1, Math.Abs(want[c])));
        }
    }
}
