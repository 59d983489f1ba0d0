using System.Net;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Batchwise.Server.SharedMemory;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests.SharedMemory;

/// <summary>Triton's system shared memory extension over HTTP and gRPC, against a real server on zoo:mlp.</summary>
public sealed class SystemSharedMemoryTests : IClassFixture<ServerFixture>, IDisposable
{
    private const int Rows = 2;
    private readonly ServerFixture _fixture;
    private readonly List<string> _files = [];

    public SystemSharedMemoryTests(ServerFixture fixture) => _fixture = fixture;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string OutputName => _fixture.Server.Models.Models.Single().Outputs[0].Name;

    private int OutputBytes => Rows * (int)_fixture.Server.Models.Models.Single().Outputs[0].Shape[1].Value!.Value * sizeof(float);

    public void Dispose()
    {
        foreach (var f in _files)
        {
            File.Delete(f);
        }
    }

    /// <summary>A POSIX shared memory object (a file under /dev/shm) of <paramref name="size"/> bytes; returns its key.</summary>
    private string CreateShm(long size)
    {
        var key = $"/bw-test-{Guid.NewGuid():N}";
        var path = "/dev/shm" + key;
        using (var f = new FileStream(path, FileMode.CreateNew))
        {
            f.SetLength(size);
        }

        _files.Add(path);
        return key;
    }

    private static void WriteAt(string key, long offset, float[] values)
    {
        using var f = new FileStream("/dev/shm" + key, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        f.Position = offset;
        f.Write(MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private static float[] ReadAt(string key, long offset, int count)
    {
        using var f = new FileStream("/dev/shm" + key, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        f.Position = offset;
        var bytes = new byte[count * sizeof(float)];
        f.ReadExactly(bytes);
        return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    private async Task<HttpResponseMessage> PostJson(string path, object body) =>
        await _fixture.Http.PostAsync(new Uri(path, UriKind.Relative), JsonContent.Create(body), Ct);

    private object HttpRequest(string inRegion, long inSize, string outRegion, long outSize, long outOffset = 0) => new
    {
        inputs = new[]
        {
            new { name = "input", datatype = "FP32", shape = new[] { Rows, 64 }, parameters = new Dictionary<string, object> { ["shared_memory_region"] = inRegion, ["shared_memory_byte_size"] = inSize } },
        },
        outputs = new[]
        {
            new { name = OutputName, parameters = new Dictionary<string, object> { ["shared_memory_region"] = outRegion, ["shared_memory_byte_size"] = outSize, ["shared_memory_offset"] = outOffset } },
        },
    };

    private static async Task<string> ErrorOf(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString()!;

    [Fact]
    public async Task Http_inputs_are_read_from_and_outputs_written_into_registered_regions_with_no_data_in_the_body()
    {
        var input = ServerFixture.Input(Rows, seed: 7);
        var inBytes = input.Length * sizeof(float);
        var key = CreateShm(inBytes + 64 + OutputBytes);
        WriteAt(key, 0, input);
        using (var r = await PostJson("/v2/systemsharedmemory/region/http-in/register", new { key, offset = 0, byte_size = inBytes }))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        using (var r = await PostJson("/v2/systemsharedmemory/region/http-out/register", new { key, offset = inBytes, byte_size = 64 + OutputBytes }))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        var status = JsonDocument.Parse(await _fixture.Http.GetStringAsync(new Uri("/v2/systemsharedmemory/region/http-out/status", UriKind.Relative), Ct)).RootElement;
        Assert.Equal("http-out", status[0].GetProperty("name").GetString());
        Assert.Equal(key, status[0].GetProperty("key").GetString());
        Assert.Equal(inBytes, status[0].GetProperty("offset").GetInt64());

        using var response = await PostJson("/v2/models/mlp/infer", HttpRequest("http-in", inBytes, "http-out", OutputBytes, outOffset: 64));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var output = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("outputs")[0];
        Assert.False(output.TryGetProperty("data", out _));
        Assert.Equal("http-out", output.GetProperty("parameters").GetProperty("shared_memory_region").GetString());
        Assert.Equal(OutputBytes, output.GetProperty("parameters").GetProperty("shared_memory_byte_size").GetInt32());

        var expected = ServerFixture.Expected(input, Rows);
        var got = ReadAt(key, inBytes + 64, expected.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], got[i], 4);
        }

        using (var r = await PostJson("/v2/systemsharedmemory/unregister", new { }))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        using var gone = await _fixture.Http.GetAsync(new Uri("/v2/systemsharedmemory/region/http-in/status", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, gone.StatusCode);
        Assert.Contains("'http-in' is not registered", await ErrorOf(gone), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_bound_is_checked_and_answered_400_naming_it()
    {
        var inBytes = Rows * 64 * sizeof(float);
        var key = CreateShm(inBytes);
        using (var past = await PostJson("/v2/systemsharedmemory/region/b-past/register", new { key, offset = 8, byte_size = inBytes }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, past.StatusCode);
            Assert.Contains("runs past the end of key", await ErrorOf(past), StringComparison.Ordinal);
        }

        using (var missing = await PostJson("/v2/systemsharedmemory/region/b-missing/register", new { key = "/bw-test-no-such-key", offset = 0, byte_size = 4 }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
            Assert.Contains("cannot open shared memory key", await ErrorOf(missing), StringComparison.Ordinal);
        }

        using (var traversal = await PostJson("/v2/systemsharedmemory/region/b-dots/register", new { key = "/../etc/passwd", offset = 0, byte_size = 4 }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, traversal.StatusCode);
        }

        using (var ok = await PostJson("/v2/systemsharedmemory/region/b-in/register", new { key, offset = 0, byte_size = inBytes }))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using (var twice = await PostJson("/v2/systemsharedmemory/region/b-in/register", new { key, offset = 0, byte_size = inBytes }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, twice.StatusCode);
            Assert.Contains("already registered", await ErrorOf(twice), StringComparison.Ordinal);
        }

        async Task Refused(object request, string words)
        {
            using var r = await PostJson("/v2/models/mlp/infer", request);
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Contains(words, await ErrorOf(r), StringComparison.Ordinal);
        }

        await Refused(HttpRequest("b-nope", inBytes, "b-in", inBytes), "region 'b-nope' is not registered");
        await Refused(HttpRequest("b-in", inBytes - 4, "b-in", inBytes), "shared_memory_byte_size is " + (inBytes - 4));
        await Refused(HttpRequest("b-in", inBytes, "b-in", inBytes, outOffset: inBytes), "runs past the end of system shared memory region 'b-in'");
        await Refused(HttpRequest("b-in", inBytes, "b-in", OutputBytes - 1), $"needs {OutputBytes} bytes");

        using var r2 = await PostJson("/v2/systemsharedmemory/region/b-in/unregister", new { });
        Assert.Equal(HttpStatusCode.OK, r2.StatusCode);
    }

    [Fact]
    public async Task Grpc_register_status_infer_and_unregister()
    {
        using var channel = GrpcChannel.ForAddress(_fixture.Server.GrpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var input = ServerFixture.Input(Rows, seed: 11);
        var inBytes = input.Length * sizeof(float);
        var key = CreateShm(inBytes + OutputBytes);
        WriteAt(key, 0, input);
        await client.SystemSharedMemoryRegisterAsync(new SystemSharedMemoryRegisterRequest { Name = "g-all", Key = key, Offset = 0, ByteSize = (ulong)(inBytes + OutputBytes) }, cancellationToken: Ct);
        var status = await client.SystemSharedMemoryStatusAsync(new SystemSharedMemoryStatusRequest { Name = "g-all" }, cancellationToken: Ct);
        Assert.Equal(key, status.Regions["g-all"].Key);

        var request = new ModelInferRequest { ModelName = "mlp" };
        var tensor = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { Rows, 64 } };
        tensor.Parameters["shared_memory_region"] = new InferParameter { StringParam = "g-all" };
        tensor.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = inBytes };
        request.Inputs.Add(tensor);
        var output = new ModelInferRequest.Types.InferRequestedOutputTensor { Name = OutputName };
        output.Parameters["shared_memory_region"] = new InferParameter { StringParam = "g-all" };
        output.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = OutputBytes };
        output.Parameters["shared_memory_offset"] = new InferParameter { Int64Param = inBytes };
        request.Outputs.Add(output);
        var response = await client.ModelInferAsync(request, cancellationToken: Ct);
        Assert.Empty(response.RawOutputContents);
        Assert.Equal("g-all", response.Outputs[0].Parameters["shared_memory_region"].StringParam);
        var expected = ServerFixture.Expected(input, Rows);
        var got = ReadAt(key, inBytes, expected.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], got[i], 4);
        }

        await client.SystemSharedMemoryUnregisterAsync(new SystemSharedMemoryUnregisterRequest { Name = "g-all" }, cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.ModelInferAsync(request, cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("region 'g-all' is not registered", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Unregister_while_a_request_holds_the_region_unmaps_only_when_it_lets_go()
    {
        var root = Directory.CreateTempSubdirectory("bw-shm-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(root, "obj"), [1, 2, 3, 4, 5, 6, 7, 8]);
            using var registry = new SystemSharedMemoryRegistry(root);
            registry.Register("r", "/obj", 4, 4);
            var held = registry.Hold("Input 'x'", "r");
            registry.Unregister("r");
            Assert.Empty(registry.Status(null));
            Assert.False(held.IsUnmapped);
            var bytes = new byte[4];
            held.Read(0, bytes);
            Assert.Equal([5, 6, 7, 8], bytes);
            Assert.Throws<InferenceError>(() => registry.Hold("Input 'x'", "r"));
            held.Release();
            Assert.True(held.IsUnmapped);

            File.CreateSymbolicLink(Path.Combine(root, "link"), Path.Combine(root, "obj"));
            var e = Assert.Throws<InferenceError>(() => registry.Register("l", "/link", 0, 4));
            Assert.Contains("symbolic link", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
