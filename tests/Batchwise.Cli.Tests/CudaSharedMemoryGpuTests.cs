using System.Net;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Batchwise.Cuda;
using Batchwise.Server.Load;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Cli.Tests;

/// <summary>
/// CUDA shared memory on a GPU, across two processes as CUDA IPC requires (a process cannot open its own handle):
/// `batchwise serve` runs as a child process, this test allocates device memory with the driver API, registers its
/// IPC handle, infers by reference and reads the output back from device memory. Skips without a GPU.
/// </summary>
public sealed partial class CudaSharedMemoryGpuTests
{
    private const int Rows = 3;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("cuda")]
    [InlineData("ort")]
    public async Task Inputs_and_outputs_in_device_memory_of_another_process_give_the_by_value_result(string engine)
    {
        GpuTest.Require();
        var ipc = DriverCudaIpc.Create();
        using var serve = ServeProcess.Start("serve", "zoo:mlp", "--engine", engine, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1", "--max-batch-size", "8");
        var address = await serve.ServingAsync(TimeSpan.FromMinutes(3));
        var grpcAddress = new Uri(GrpcLine().Match(serve.Out).Groups[1].Value);
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };

        var meta = JsonDocument.Parse(await http.GetStringAsync(new Uri("/v2", UriKind.Relative), Ct)).RootElement;
        Assert.Contains("cuda_shared_memory", meta.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));
        var model = JsonDocument.Parse(await http.GetStringAsync(new Uri("/v2/models/mlp", UriKind.Relative), Ct)).RootElement;
        var outputName = model.GetProperty("outputs")[0].GetProperty("name").GetString()!;
        var outputWidth = model.GetProperty("outputs")[0].GetProperty("shape")[1].GetInt32();

        var rng = new Random(5);
        var input = Enumerable.Range(0, Rows * 64).Select(_ => (float)rng.NextDouble()).ToArray();
        var inBytes = input.Length * sizeof(float);
        var outBytes = Rows * outputWidth * sizeof(float);
        using var inMemory = ipc.Allocate(0, 256 + inBytes);
        using var outMemory = ipc.Allocate(0, 512 + outBytes);
        inMemory.Write(256, MemoryMarshal.AsBytes(input.AsSpan()));
        outMemory.Write(0, new byte[512 + outBytes]);

        foreach (var (name, memory) in new[] { ("gpu-in", inMemory), ("gpu-out", outMemory) })
        {
            using var r = await http.PostAsync(new Uri($"/v2/cudasharedmemory/region/{name}/register", UriKind.Relative), JsonContent.Create(new { raw_handle = new { b64 = Convert.ToBase64String(memory.IpcHandle()) }, device_id = 0, byte_size = memory.Bytes }), Ct);
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"register {name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(Ct)}");
        }

        var byReference = new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { Rows, 64 }, parameters = new Dictionary<string, object> { ["shared_memory_region"] = "gpu-in", ["shared_memory_byte_size"] = inBytes, ["shared_memory_offset"] = 256 } } },
            outputs = new[] { new { name = outputName, parameters = new Dictionary<string, object> { ["shared_memory_region"] = "gpu-out", ["shared_memory_byte_size"] = outBytes, ["shared_memory_offset"] = 512 } } },
        };
        using (var r = await http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), JsonContent.Create(byReference), Ct))
        {
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"infer by reference: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(Ct)}");
        }

        var byValue = new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { Rows, 64 }, data = input } } };
        using var valueResponse = await http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), JsonContent.Create(byValue), Ct);
        var expected = JsonDocument.Parse(await valueResponse.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        var got = new float[Rows * outputWidth];
        outMemory.Read(512, MemoryMarshal.AsBytes(got.AsSpan()));
        Assert.Equal(expected.Length, got.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], got[i], 5);
        }

        // gRPC: status names the regions on device 0; unregistering every region closes them (the memory stays ours).
        using var channel = GrpcChannel.ForAddress(grpcAddress);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var status = await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct);
        Assert.Equal(0UL, status.Regions["gpu-in"].DeviceId);
        Assert.Equal((ulong)outMemory.Bytes, status.Regions["gpu-out"].ByteSize);
        await client.CudaSharedMemoryUnregisterAsync(new CudaSharedMemoryUnregisterRequest(), deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct);
        Assert.Empty((await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct)).Regions);

        // A handle from the server's own point of view that is not a handle: refused, and the server goes on.
        var bad = await Assert.ThrowsAsync<RpcException>(async () => await client.CudaSharedMemoryRegisterAsync(new CudaSharedMemoryRegisterRequest { Name = "junk", RawHandle = ByteString.CopyFrom(new byte[64]), DeviceId = 0, ByteSize = 4 }, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);

        // The load generator's --shared-memory cuda against the same server, over gRPC: no errors, region released.
        var report = await new LoadGenerator(new LoadOptions
        {
            Url = grpcAddress,
            Model = "mlp",
            Protocol = "grpc",
            SharedMemory = "cuda",
            CudaIpc = ipc,
            Concurrency = [4],
            Warmup = TimeSpan.FromMilliseconds(200),
            Window = TimeSpan.FromMilliseconds(300),
            MaxWindows = 3,
        }).RunAsync(cancellationToken: Ct);
        Assert.Equal(0, Assert.Single(report.Points).Errors);
        Assert.Empty((await client.CudaSharedMemoryStatusAsync(new CudaSharedMemoryStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct)).Regions);
    }

    /// <summary>
    /// CUDA shared memory on the cuda engine under concurrency: 16 requests, each with its input row and its output row at
    /// its own offset of device regions (inputs 16-byte aligned: the segment copy's vector path; outputs 3 bytes off: its
    /// byte path), merged
    /// into batches whose rows are gathered and scattered in place; every answer read back from device memory is the
    /// one the same input sent by value gets, with the segment copy (BATCHWISE_GATHER=kernel) and one copy a row (copies).
    /// With --pipeline-depth 2 and batches of at most 2, the instance has two batches queued on its one stream at a time
    /// (each on its own staging lane and segment table): still no request gets another's rows.
    /// </summary>
    [Theory]
    [InlineData("kernel", 1, 8)]
    [InlineData("copies", 1, 8)]
    [InlineData("kernel", 2, 2)]
    [InlineData("copies", 2, 2)]
    public async Task Cuda_shared_memory_rows_of_concurrent_requests_each_get_their_own_answer_in_place(string gather, int depth, int maxBatch)
    {
        GpuTest.Require();
        var ipc = DriverCudaIpc.Create();
        using var serve = ServeProcess.StartWith(new Dictionary<string, string?> { ["BATCHWISE_GATHER"] = gather }, "serve", "zoo:mlp", "--engine", "cuda", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1", "--max-batch-size", maxBatch.ToString(System.Globalization.CultureInfo.InvariantCulture), "--max-queue-delay-us", "2000", "--pipeline-depth", depth.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var address = await serve.ServingAsync(TimeSpan.FromMinutes(3));
        Assert.Equal(depth > 1, serve.Out.Contains($"x {depth} batches in flight", StringComparison.Ordinal));
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
        var model = JsonDocument.Parse(await http.GetStringAsync(new Uri("/v2/models/mlp", UriKind.Relative), Ct)).RootElement;
        var outputName = model.GetProperty("outputs")[0].GetProperty("name").GetString()!;
        var outputWidth = model.GetProperty("outputs")[0].GetProperty("shape")[1].GetInt32();
        const int Requests = 16;
        const int InBytes = 64 * sizeof(float);
        const int InSkew = 16;
        const int OutSkew = 3;
        var outBytes = outputWidth * sizeof(float);
        var inputs = Enumerable.Range(0, Requests).Select(id => Enumerable.Range(0, 64).Select(k => (float)Math.Cos((id * 64) + k)).ToArray()).ToList();
        using var inMemory = ipc.Allocate(0, InSkew + (Requests * InBytes));
        using var outMemory = ipc.Allocate(0, OutSkew + (Requests * outBytes));
        inMemory.Write(InSkew, [.. inputs.SelectMany(i => MemoryMarshal.AsBytes(i.AsSpan()).ToArray())]);
        outMemory.Write(0, new byte[outMemory.Bytes]);
        foreach (var (name, memory) in new[] { ("gpu-in", inMemory), ("gpu-out", outMemory) })
        {
            using var r = await http.PostAsync(new Uri($"/v2/cudasharedmemory/region/{name}/register", UriKind.Relative), JsonContent.Create(new { raw_handle = new { b64 = Convert.ToBase64String(memory.IpcHandle()) }, device_id = 0, byte_size = memory.Bytes }), Ct);
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"register {name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(Ct)}");
        }

        async Task<string> Infer(object request)
        {
            using var r = await http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), JsonContent.Create(request), Ct);
            var body = await r.Content.ReadAsStringAsync(Ct);
            Assert.True(r.StatusCode == HttpStatusCode.OK, body);
            return body;
        }

        var byReference = Enumerable.Range(0, Requests).Select(id => Infer(new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 64 }, parameters = new Dictionary<string, object> { ["shared_memory_region"] = "gpu-in", ["shared_memory_byte_size"] = InBytes, ["shared_memory_offset"] = InSkew + (id * InBytes) } } },
            outputs = new[] { new { name = outputName, parameters = new Dictionary<string, object> { ["shared_memory_region"] = "gpu-out", ["shared_memory_byte_size"] = outBytes, ["shared_memory_offset"] = OutSkew + (id * outBytes) } } },
        })).ToList();
        await Task.WhenAll(byReference).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        var got = new float[Requests * outputWidth];
        outMemory.Read(OutSkew, MemoryMarshal.AsBytes(got.AsSpan()));
        for (var id = 0; id < Requests; id++)
        {
            var body = await Infer(new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 64 }, data = inputs[id] } } });
            var expected = JsonDocument.Parse(body).RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray();
            Assert.Equal(outputWidth, expected.Length);
            for (var k = 0; k < outputWidth; k++)
            {
                Assert.Equal(expected[k], got[(id * outputWidth) + k], 5);
            }
        }
    }

    /// <summary>
    /// System shared memory on the cuda engine: the region is page-locked with the driver (said in the server log) and 16
    /// concurrent requests, merged into batches, each have their rows copied from it straight to the device at their
    /// offset; every answer is checked against the same input sent by value.
    /// </summary>
    [Fact]
    public async Task System_shared_memory_on_the_cuda_engine_is_page_locked_and_every_concurrent_answer_is_its_own()
    {
        GpuTest.Require();
        using var serve = ServeProcess.Start("serve", "zoo:mlp", "--engine", "cuda", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1", "--max-batch-size", "8", "--max-queue-delay-us", "2000");
        var address = await serve.ServingAsync(TimeSpan.FromMinutes(3));
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
        const int Requests = 16;
        const int InBytes = 64 * sizeof(float);
        var inputs = Enumerable.Range(0, Requests).Select(id => Enumerable.Range(0, 64).Select(k => (float)Math.Sin((id * 64) + k)).ToArray()).ToList();
        var key = $"/bw-gpu-{Guid.NewGuid():N}";
        var path = "/dev/shm" + key;
        File.WriteAllBytes(path, [.. inputs.SelectMany(i => MemoryMarshal.AsBytes(i.AsSpan()).ToArray())]);
        try
        {
            using (var r = await http.PostAsync(new Uri("/v2/systemsharedmemory/region/rows/register", UriKind.Relative), JsonContent.Create(new { key, offset = 0, byte_size = Requests * InBytes }), Ct))
            {
                Assert.True(r.StatusCode == HttpStatusCode.OK, await r.Content.ReadAsStringAsync(Ct));
            }

            async Task<float[]> Infer(object input)
            {
                using var r = await http.PostAsync(new Uri("/v2/models/mlp/infer", UriKind.Relative), JsonContent.Create(new { inputs = new[] { input } }), Ct);
                var body = await r.Content.ReadAsStringAsync(Ct);
                Assert.True(r.StatusCode == HttpStatusCode.OK, body);
                return [.. JsonDocument.Parse(body).RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetSingle())];
            }

            var byReference = Enumerable.Range(0, Requests).Select(id => Infer(new { name = "input", datatype = "FP32", shape = new[] { 1, 64 }, parameters = new Dictionary<string, object> { ["shared_memory_region"] = "rows", ["shared_memory_byte_size"] = InBytes, ["shared_memory_offset"] = id * InBytes } })).ToList();
            var answers = await Task.WhenAll(byReference).WaitAsync(TimeSpan.FromSeconds(60), Ct);
            for (var id = 0; id < Requests; id++)
            {
                var expected = await Infer(new { name = "input", datatype = "FP32", shape = new[] { 1, 64 }, data = inputs[id] });
                Assert.Equal(expected.Length, answers[id].Length);
                for (var k = 0; k < expected.Length; k++)
                {
                    Assert.Equal(expected[k], answers[id][k], 5);
                }
            }

            Assert.Contains("system shared memory region 'rows' (" + (Requests * InBytes) + " bytes) page-locked for mlp", serve.Err + serve.Out, StringComparison.Ordinal);
            using var unregister = await http.PostAsync(new Uri("/v2/systemsharedmemory/unregister", UriKind.Relative), JsonContent.Create(new { }), Ct);
            Assert.Equal(HttpStatusCode.OK, unregister.StatusCode);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [GeneratedRegex(@"gRPC on (\S+?),? ")]
    private static partial Regex GrpcLine();
}
