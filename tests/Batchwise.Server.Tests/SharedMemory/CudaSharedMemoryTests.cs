using System.Net;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using Batchwise.Server.Load;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests.SharedMemory;

/// <summary>A server on zoo:mlp whose CUDA IPC is <see cref="HostCudaIpc"/> (host memory standing in for device memory).</summary>
public sealed class CudaServerFixture : IAsyncLifetime
{
    internal HostCudaIpc Ipc { get; } = new(deviceCount: 2);

    public InferenceServer Server { get; private set; } = null!;

    public HttpClient Http { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 200 } });
        Server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = -1, CudaIpc = Ipc });
        Http = new HttpClient { BaseAddress = Server.HttpAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}

/// <summary>
/// Triton's CUDA shared memory extension over HTTP and gRPC: registration, status, unregistration and inference by
/// reference, against a real server whose device memory is host memory (<see cref="HostCudaIpc"/>). The driver's own
/// path (cuIpcOpenMemHandle across two processes) is the GPU test CudaSharedMemoryGpuTests in Batchwise.Cli.Tests.
/// </summary>
public sealed class CudaSharedMemoryTests(CudaServerFixture fixture) : IClassFixture<CudaServerFixture>
{
    private const int Rows = 2;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Deadline => new(deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct);

    private string OutputName => fixture.Server.Models.Models.Single().Outputs[0].Name;

    private int OutputBytes => Rows * (int)fixture.Server.Models.Models.Single().Outputs[0].Shape[1].Value!.Value * sizeof(float);

    private async Task<HttpResponseMessage> PostJson(string path, object body) =>
        await fixture.Http.PostAsync(new Uri(path, UriKind.Relative), JsonContent.Create(body), Ct);

    private static async Task<string> ErrorOf(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString()!;

    private static object Register(byte[] handle, long byteSize, int device = 0) => new { raw_handle = new { b64 = Convert.ToBase64String(handle) }, device_id = device, byte_size = byteSize };

    private object InferBody(string inRegion, long inOffset, string outRegion, long outOffset) => new
    {
        inputs = new[]
        {
            new { name = "input", datatype = "FP32", shape = new[] { Rows, 64 }, parameters = new Dictionary<string, object> { ["shared_memory_region"] = inRegion, ["shared_memory_byte_size"] = Rows * 64 * sizeof(float), ["shared_memory_offset"] = inOffset } },
        },
        outputs = new[]
        {
            new { name = OutputName, parameters = new Dictionary<string, object> { ["shared_memory_region"] = outRegion, ["shared_memory_byte_size"] = OutputBytes, ["shared_memory_offset"] = outOffset } },
        },
    };

    [Fact]
    public async Task Http_register_then_infer_by_reference_reads_the_input_from_and_writes_the_output_into_device_regions()
    {
        var input = ServerFixture.Input(Rows, seed: 11);
        var inBytes = input.Length * sizeof(float);
        using var inMemory = fixture.Ipc.Allocate(0, 128 + inBytes);
        using var outMemory = fixture.Ipc.Allocate(1, 256 + OutputBytes);
        inMemory.Write(128, MemoryMarshal.AsBytes(input.AsSpan()));
        using (var r = await PostJson("/v2/cudasharedmemory/region/c-in/register", Register(inMemory.IpcHandle(), 128 + inBytes)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        using (var r = await PostJson("/v2/cudasharedmemory/region/c-out/register", Register(outMemory.IpcHandle(), 256 + OutputBytes, device: 1)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        var status = JsonDocument.Parse(await fixture.Http.GetStringAsync(new Uri("/v2/cudasharedmemory/region/c-out/status", UriKind.Relative), Ct)).RootElement;
        Assert.Equal("c-out", status[0].GetProperty("name").GetString());
        Assert.Equal(1, status[0].GetProperty("device_id").GetInt64());
        Assert.Equal(256 + OutputBytes, status[0].GetProperty("byte_size").GetInt64());

        using var response = await PostJson("/v2/models/mlp/infer", InferBody("c-in", 128, "c-out", 256));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var output = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("outputs")[0];
        Assert.False(output.TryGetProperty("data", out _));
        Assert.Equal("c-out", output.GetProperty("parameters").GetProperty("shared_memory_region").GetString());

        var expected = ServerFixture.Expected(input, Rows);
        var got = new float[expected.Length];
        outMemory.Read(256, MemoryMarshal.AsBytes(got.AsSpan()));
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], got[i], 4);
        }

        var closedBefore = fixture.Ipc.Closed;
        using (var r = await PostJson("/v2/cudasharedmemory/region/c-in/unregister", new { }))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        using (var r = await PostJson("/v2/cudasharedmemory/region/c-out/unregister", new { }))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        Assert.Equal(closedBefore + 2, fixture.Ipc.Closed);
        using var gone = await fixture.Http.GetAsync(new Uri("/v2/cudasharedmemory/region/c-in/status", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Equal("Unable to find cuda shared memory region: 'c-in'", await ErrorOf(gone));
    }

    [Fact]
    public async Task Grpc_register_then_infer_by_reference_matches_the_by_value_result_and_unregister_all_closes_every_handle()
    {
        using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var input = ServerFixture.Input(Rows, seed: 12);
        var inBytes = input.Length * sizeof(float);
        using var memory = fixture.Ipc.Allocate(0, inBytes + OutputBytes);
        memory.Write(0, MemoryMarshal.AsBytes(input.AsSpan()));
        await client.CudaSharedMemoryRegisterAsync(new CudaSharedMemoryRegisterRequest { Name = "g-io", RawHandle = ByteString.CopyFrom(memory.IpcHandle()), DeviceId = 0, ByteSize = (ulong)(inBytes + OutputBytes) }, Deadline);
        var status = await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest { Name = "g-io" }, Deadline);
        Assert.Equal((ulong)(inBytes + OutputBytes), status.Regions["g-io"].ByteSize);

        var request = new ModelInferRequest { ModelName = "mlp" };
        var tensor = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { Rows, 64 } };
        tensor.Parameters["shared_memory_region"] = new InferParameter { StringParam = "g-io" };
        tensor.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = inBytes };
        request.Inputs.Add(tensor);
        var output = new ModelInferRequest.Types.InferRequestedOutputTensor { Name = OutputName };
        output.Parameters["shared_memory_region"] = new InferParameter { StringParam = "g-io" };
        output.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = OutputBytes };
        output.Parameters["shared_memory_offset"] = new InferParameter { Int64Param = inBytes };
        request.Outputs.Add(output);
        var response = await client.ModelInferAsync(request, Deadline);
        Assert.DoesNotContain(response.RawOutputContents, c => c.Length > 0);

        // The same input by value: the region holds exactly those bytes.
        var byValue = new ModelInferRequest { ModelName = "mlp" };
        byValue.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { Rows, 64 } });
        byValue.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(input.AsSpan())));
        var expected = (await client.ModelInferAsync(byValue, Deadline)).RawOutputContents[0].ToByteArray();
        var got = new byte[OutputBytes];
        memory.Read(inBytes, got);
        Assert.Equal(expected, got);

        var closedBefore = fixture.Ipc.Closed;
        await client.CudaSharedMemoryUnregisterAsync(new CudaSharedMemoryUnregisterRequest(), Deadline);
        Assert.Equal(closedBefore + 1, fixture.Ipc.Closed);
        Assert.DoesNotContain("g-io", (await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest(), Deadline)).Regions.Keys);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.ModelInferAsync(request, Deadline));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("region 'g-io' is not registered", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_bad_registration_and_out_of_range_reference_is_a_precise_error_and_leaves_no_handle_open()
    {
        using var memory = fixture.Ipc.Allocate(0, 64);
        var handle = memory.IpcHandle();
        var openBefore = fixture.Ipc.Opened - fixture.Ipc.Closed;

        async Task Refused(object body, string region, string expected)
        {
            using var r = await PostJson($"/v2/cudasharedmemory/region/{region}/register", body);
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Contains(expected, await ErrorOf(r), StringComparison.Ordinal);
        }

        await Refused(new { device_id = 0, byte_size = 4 }, "b1", "has no 'raw_handle' field");
        await Refused(new { raw_handle = new { b64 = "not base64!" }, device_id = 0, byte_size = 4 }, "b2", "'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t");
        await Refused(Register(new byte[10], 4), "b3", "'raw_handle' has 10 bytes; it must be a cudaIpcMemHandle_t (64 bytes");
        await Refused(Register(handle, 4, device: 2), "b4", "device_id 2 does not exist; this server has 2 GPU(s) (0 to 1)");
        await Refused(Register(handle, 65), "b5", "byte_size 65 runs past the end of the 64-byte device allocation");
        await Refused(Register(new byte[64], 4), "b6", "cannot open its CUDA IPC handle on device 0");
        await Refused(new { raw_handle = new { b64 = Convert.ToBase64String(handle) }, device_id = 0 }, "b7", "\"byte_size\" is missing");
        Assert.Equal(openBefore, fixture.Ipc.Opened - fixture.Ipc.Closed);

        // One namespace with system shared memory, as Triton: a name of the other kind is taken, and its status says so.
        var key = $"/bw-test-{Guid.NewGuid():N}";
        File.WriteAllBytes("/dev/shm" + key, new byte[64]);
        try
        {
            using (var r = await PostJson("/v2/systemsharedmemory/region/both/register", new { key, byte_size = 64 }))
            {
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            }

            await Refused(Register(handle, 64), "both", "shared memory region 'both' already in manager");
            using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
            var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
            var taken = await Assert.ThrowsAsync<RpcException>(async () => await client.CudaSharedMemoryRegisterAsync(new CudaSharedMemoryRegisterRequest { Name = "both", RawHandle = ByteString.CopyFrom(handle), ByteSize = 64 }, Deadline));
            Assert.Equal(StatusCode.AlreadyExists, taken.StatusCode);
            using var kind = await fixture.Http.GetAsync(new Uri("/v2/cudasharedmemory/region/both/status", UriKind.Relative), Ct);
            Assert.Equal(HttpStatusCode.NotFound, kind.StatusCode);
            Assert.Equal("The region named 'both' is registered as system shared memory, not CUDA shared memory", await ErrorOf(kind));

            // A CUDA unregister of a system region's name leaves it alone (Triton's kind check).
            using (await PostJson("/v2/cudasharedmemory/region/both/unregister", new { }))
            {
            }

            Assert.Equal(HttpStatusCode.OK, (await fixture.Http.GetAsync(new Uri("/v2/systemsharedmemory/region/both/status", UriKind.Relative), Ct)).StatusCode);
        }
        finally
        {
            using (await PostJson("/v2/systemsharedmemory/region/both/unregister", new { }))
            {
            }

            File.Delete("/dev/shm" + key);
        }

        // A reference past the region's end is a 400 naming the region; nothing is read past the mapping.
        using (var r = await PostJson("/v2/cudasharedmemory/region/small/register", Register(handle, 64)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        try
        {
            using var past = await PostJson("/v2/models/mlp/infer", InferBody("small", 0, "small", 0));
            Assert.Equal(HttpStatusCode.BadRequest, past.StatusCode);
            Assert.Contains("runs past the end of CUDA shared memory region 'small' (64 bytes)", await ErrorOf(past), StringComparison.Ordinal);
        }
        finally
        {
            using (await PostJson("/v2/cudasharedmemory/region/small/unregister", new { }))
            {
            }
        }
    }

    [Fact]
    public async Task Server_metadata_lists_cuda_shared_memory_where_cuda_ipc_works()
    {
        var meta = JsonDocument.Parse(await fixture.Http.GetStringAsync(new Uri("/v2", UriKind.Relative), Ct)).RootElement;
        Assert.Contains("cuda_shared_memory", meta.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));
        using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        Assert.Contains("cuda_shared_memory", (await client.ServerMetadataAsync(new ServerMetadataRequest(), Deadline)).Extensions);
    }

    [Theory]
    [InlineData("http")]
    [InlineData("grpc")]
    public async Task Load_with_cuda_shared_memory_registers_device_memory_sends_references_and_frees_it_at_the_end(string protocol)
    {
        var allocatedBefore = fixture.Ipc.Allocated;
        var openBefore = fixture.Ipc.Opened - fixture.Ipc.Closed;
        var generator = new LoadGenerator(new LoadOptions
        {
            Url = protocol == "http" ? fixture.Server.HttpAddress : fixture.Server.GrpcAddress,
            Model = "mlp",
            Protocol = protocol,
            SharedMemory = "cuda",
            CudaIpc = fixture.Ipc,
            Concurrency = [2],
            Warmup = TimeSpan.FromMilliseconds(100),
            Window = TimeSpan.FromMilliseconds(150),
            MaxWindows = 3,
        });
        var report = await generator.RunAsync(cancellationToken: Ct);
        var point = Assert.Single(report.Points);
        Assert.True(point.Requests > 0);
        Assert.True(point.Errors == 0, $"{point.Errors} error(s): {string.Join("; ", point.ErrorKinds.Select(k => $"{k.Key} x{k.Value}"))}");
        Assert.Equal("input: float32 [1, 64]; inputs in CUDA shared memory (GPU 0)", report.Inputs);
        Assert.Equal(allocatedBefore, fixture.Ipc.Allocated);

        // The server closes a region's handle when it is unregistered and the last request holding it lets go, which
        // may come just after the response that the load generator waited for (CI saw one handle still open).
        await ServerState.Until(() => fixture.Ipc.Opened - fixture.Ipc.Closed == openBefore);
        var left = await fixture.Http.GetFromJsonAsync<JsonElement>(new Uri("/v2/cudasharedmemory/status", UriKind.Relative), Ct);
        Assert.DoesNotContain(left.EnumerateArray(), r => r.GetProperty("name").GetString()!.StartsWith("batchwise-load-cuda-", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Stopping_the_server_closes_every_registered_handle()
    {
        var ipc = new HostCudaIpc();
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8 });
        var server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = -1, CudaIpc = ipc });
        using var memory = ipc.Allocate(0, 32);
        try
        {
            using var http = new HttpClient { BaseAddress = server.HttpAddress, Timeout = TimeSpan.FromSeconds(30) };
            using var r = await http.PostAsync(new Uri("/v2/cudasharedmemory/region/left/register", UriKind.Relative), JsonContent.Create(Register(memory.IpcHandle(), 32)), Ct);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal(1, ipc.Opened);
            Assert.Equal(0, ipc.Closed);
        }
        finally
        {
            await server.DisposeAsync();
        }

        Assert.Equal(1, ipc.Closed);
    }
}

/// <summary>The CUDA shared memory extension on a server with no CUDA (this test host): refused in Triton's words, never a crash.</summary>
public sealed class CudaSharedMemoryWithoutGpuTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Deadline => new(deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct);

    private static async Task<string> ErrorOf(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString()!;

    [Fact]
    public async Task Register_is_refused_as_gpus_not_supported_on_both_protocols()
    {
        using var response = await fixture.Http.PostAsync(new Uri("/v2/cudasharedmemory/region/c/register", UriKind.Relative), JsonContent.Create(new { raw_handle = new { b64 = Convert.ToBase64String(new byte[64]) }, device_id = 0, byte_size = 4 }), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.StartsWith("failed to register CUDA shared memory region: 'c', GPUs not supported (", await ErrorOf(response), StringComparison.Ordinal);

        using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.CudaSharedMemoryRegisterAsync(new CudaSharedMemoryRegisterRequest { Name = "g", RawHandle = ByteString.CopyFrom(new byte[64]), ByteSize = 4 }, Deadline));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("failed to register CUDA shared memory region: 'g', GPUs not supported", e.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("use system shared memory", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_lists_nothing_an_unknown_name_is_not_found_and_unregister_succeeds_as_in_triton()
    {
        Assert.Equal("[]", await fixture.Http.GetStringAsync(new Uri("/v2/cudasharedmemory/status", UriKind.Relative), Ct));
        using (var unknown = await fixture.Http.GetAsync(new Uri("/v2/cudasharedmemory/region/nope/status", UriKind.Relative), Ct))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
            Assert.Equal("Unable to find cuda shared memory region: 'nope'", await ErrorOf(unknown));
        }

        using (var one = await fixture.Http.PostAsync(new Uri("/v2/cudasharedmemory/region/nope/unregister", UriKind.Relative), null, Ct))
        {
            Assert.Equal(HttpStatusCode.OK, one.StatusCode);
        }

        using (var all = await fixture.Http.PostAsync(new Uri("/v2/cudasharedmemory/unregister", UriKind.Relative), null, Ct))
        {
            Assert.Equal(HttpStatusCode.OK, all.StatusCode);
        }

        using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        Assert.Empty((await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest(), Deadline)).Regions);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest { Name = "nope" }, Deadline));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        await client.CudaSharedMemoryUnregisterAsync(new CudaSharedMemoryUnregisterRequest { Name = "nope" }, Deadline);
        await client.CudaSharedMemoryUnregisterAsync(new CudaSharedMemoryUnregisterRequest(), Deadline);
    }

    [Fact]
    public async Task Server_metadata_does_not_list_cuda_shared_memory_without_cuda()
    {
        var meta = JsonDocument.Parse(await fixture.Http.GetStringAsync(new Uri("/v2", UriKind.Relative), Ct)).RootElement;
        var extensions = meta.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains("system_shared_memory", extensions);
        Assert.DoesNotContain("cuda_shared_memory", extensions);
        using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        Assert.DoesNotContain("cuda_shared_memory", (await client.ServerMetadataAsync(new ServerMetadataRequest(), Deadline)).Extensions);
    }

    [Fact]
    public void Load_with_cuda_shared_memory_without_a_gpu_is_one_line_naming_the_problem_and_the_fix()
    {
        var e = Assert.Throws<BatchwiseException>(() => InferenceClient.Create("grpc", new Uri("http://127.0.0.1:1"), TimeSpan.FromSeconds(1), sharedMemory: "cuda"));
        Assert.StartsWith("--shared-memory cuda needs an NVIDIA GPU on the load client", e.Message, StringComparison.Ordinal);
        Assert.Contains("--shared-memory system", e.Hint, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
