using System.Net;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.Protocol;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests.SharedMemory;

/// <summary>
/// An engine that reads shared memory in place as the cuda engine does, on the CPU: its staged runs take page-locked
/// host rows and device rows through <see cref="IStagedRun.TryCopyInput"/> and read them only when the run executes
/// (as the device copy would), at the request's row offset in the batch; it "page-locks" host ranges by counting them.
/// </summary>
internal sealed class InPlaceEngine(bool registrationFails = false) : IEngine
{
    private int _direct;
    private int _registered;
    private int _unregistered;

    public string Name => "in-place";

    /// <summary>Whether page-locking is refused (as a driver may refuse a range).</summary>
    public bool RegistrationFails { get; } = registrationFails;

    /// <summary>Request rows the engine read in place.</summary>
    public int Direct => Volatile.Read(ref _direct);

    public int Registered => Volatile.Read(ref _registered);

    public int Unregistered => Volatile.Read(ref _unregistered);

    public EngineDescription Describe(EngineOptions options) => new(Name, "test", "none", new Dictionary<string, string>());

    public IEngineSession Load(OnnxModel model, EngineOptions options) => new Session(this, new OrtEngine().Load(model, options));

    private sealed class Session(InPlaceEngine engine, IEngineSession inner) : IEngineSession, IStagedExecution, IHostMemoryRegistration
    {
        public IReadOnlyList<TensorSpec> Inputs => inner.Inputs;

        public IReadOnlyList<TensorSpec> Outputs => inner.Outputs;

        public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default) => inner.Run(inputs, cancellationToken);

        public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) => inner.Prepare(inputs);

        public IStagedRun Stage(IReadOnlyList<long[]> inputShapes) => new Run(engine, inner, inputShapes);

        public IDisposable? TryRegister(IntPtr pointer, long bytes, out string? failure)
        {
            if (engine.RegistrationFails)
            {
                failure = "the test driver refuses";
                return null;
            }

            failure = null;
            Interlocked.Increment(ref engine._registered);
            return new Registration(engine);
        }

        public void Dispose() => inner.Dispose();
    }

    private sealed class Registration(InPlaceEngine engine) : IDisposable
    {
        public void Dispose() => Interlocked.Increment(ref engine._unregistered);
    }

    private sealed class Run(InPlaceEngine engine, IEngineSession session, IReadOnlyList<long[]> shapes) : IStagedRun
    {
        private readonly Tensor[] _inputs = [.. session.Inputs.Select((spec, i) => Tensor.Zeros(spec.ElementType, shapes[i]))];
        private readonly List<(int Index, long Offset, TensorSource Source)> _direct = [];
        private IReadOnlyList<Tensor>? _outputs;

        public IReadOnlyList<long[]> OutputShapes => _outputs!.Select(o => o.Shape).ToList();

        public Memory<byte> Input(int index) => _inputs[index].Data;

        public bool TryCopyInput(int index, long byteOffset, TensorSource source)
        {
            if (source is not (HostTensorSource { PageLocked: true } or DeviceTensorSource))
            {
                return false;
            }

            _direct.Add((index, byteOffset, source));
            return true;
        }

        public async Task RunAsync(CancellationToken cancellationToken = default)
        {
            foreach (var (index, offset, source) in _direct)
            {
                source.CopyTo(_inputs[index].Data.AsSpan(checked((int)offset), checked((int)source.ByteCount)));
                Interlocked.Increment(ref engine._direct);
            }

            _outputs = await Task.Run(() => session.Run(_inputs, cancellationToken), cancellationToken);
        }

        public ReadOnlyMemory<byte> Output(int index) => _outputs![index].Data;

        public void Dispose()
        {
        }
    }
}

/// <summary>Inputs in system shared memory reach an engine that reads them in place, with no copy when decoded.</summary>
public sealed class InPlaceInputTests : IDisposable
{
    private const int Size = 16;
    private const int InBytes = 3 * Size * Size * sizeof(float);
    private readonly List<string> _files = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        foreach (var f in _files)
        {
            File.Delete(f);
        }
    }

    private string CreateShm(long size)
    {
        var key = $"/bw-inplace-{Guid.NewGuid():N}";
        using (var f = new FileStream("/dev/shm" + key, FileMode.CreateNew))
        {
            f.SetLength(size);
        }

        _files.Add("/dev/shm" + key);
        return key;
    }

    /// <summary>Request <paramref name="id"/>'s image: channel c filled with id + c/4, so its mean per channel is exactly that.</summary>
    private static float[] Image(int id)
    {
        var values = new float[3 * Size * Size];
        for (var c = 0; c < 3; c++)
        {
            values.AsSpan(c * Size * Size, Size * Size).Fill(id + (c / 4f));
        }

        return values;
    }

    private static float[] Expected(int id) => [id, id + 0.25f, id + 0.5f];

    private static async Task<(InferenceServer Server, List<string> Log)> Start(InPlaceEngine engine, HostCudaIpc? ipc)
    {
        var name = "in-place-" + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        var log = new List<string>();
        var models = new ModelRepository(options: new RepositoryOptions { Log = line => { lock (log) { log.Add(line); } } });
        models.Add("transport", $"zoo:transport?size={Size}", new ModelConfig
        {
            MaxBatchSize = 8,
            InstanceCount = 2,
            Engine = name,
            DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 3000 },
        });
        return (await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, CudaIpc = ipc }), log);
    }

    /// <summary>
    /// 24 concurrent requests, HTTP and gRPC, two in three with their input in one registered region (system or CUDA, each
    /// at its own offset) and the rest by value, merged into batches: every answer is its own request's, the in-region
    /// rows were read in place by the engine at their offset in the batch (none copied when decoded), and a system region
    /// was page-locked once and released once (or, where page-locking fails, read through staging, said once in the log).
    /// </summary>
    [Theory]
    [InlineData("system", false)]
    [InlineData("system", true)]
    [InlineData("cuda", false)]
    public async Task Concurrent_requests_with_inputs_in_a_region_each_get_their_own_answer_read_in_place(string kind, bool registrationFails)
    {
        var engine = new InPlaceEngine(registrationFails);
        var ipc = kind == "cuda" ? new HostCudaIpc() : null;
        var (server, log) = await Start(engine, ipc);
        await using var serverScope = server;
        using var http = new HttpClient { BaseAddress = server.HttpAddress, Timeout = TimeSpan.FromSeconds(30) };
        using var channel = GrpcChannel.ForAddress(server.GrpcAddress);
        var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);

        const int Requests = 24;
        var images = new byte[Requests * InBytes];
        for (var id = 0; id < Requests; id++)
        {
            MemoryMarshal.AsBytes(Image(id).AsSpan()).CopyTo(images.AsSpan(id * InBytes));
        }

        using var device = ipc?.Allocate(0, images.Length);
        HttpResponseMessage registered;
        if (device is not null)
        {
            device.Write(0, images);
            registered = await http.PostAsync(new Uri("/v2/cudasharedmemory/region/images/register", UriKind.Relative), JsonContent.Create(new { raw_handle = new { b64 = Convert.ToBase64String(device.IpcHandle()) }, device_id = 0, byte_size = images.Length }), Ct);
        }
        else
        {
            var key = CreateShm(images.Length);
            File.WriteAllBytes("/dev/shm" + key, images);
            registered = await http.PostAsync(new Uri("/v2/systemsharedmemory/region/images/register", UriKind.Relative), JsonContent.Create(new { key, offset = 0, byte_size = images.Length }), Ct);
        }

        using (registered)
        {
            Assert.Equal(HttpStatusCode.OK, registered.StatusCode);
        }

        async Task<float[]> Http(int id, bool inRegion)
        {
            var parameters = inRegion
                ? new Dictionary<string, object> { ["shared_memory_region"] = "images", ["shared_memory_byte_size"] = InBytes, ["shared_memory_offset"] = id * InBytes }
                : [];
            object input = inRegion
                ? new { name = "input", datatype = "FP32", shape = new[] { 1, 3, Size, Size }, parameters }
                : new { name = "input", datatype = "FP32", shape = new[] { 1, 3, Size, Size }, data = Image(id) };
            using var response = await http.PostAsync(new Uri("/v2/models/transport/infer", UriKind.Relative), JsonContent.Create(new { inputs = new[] { input } }), Ct);
            var body = await response.Content.ReadAsStringAsync(Ct);
            Assert.True(response.StatusCode == HttpStatusCode.OK, body);
            return [.. JsonDocument.Parse(body).RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(e => e.GetSingle())];
        }

        async Task<float[]> Grpc(int id, bool inRegion)
        {
            var request = new ModelInferRequest { ModelName = "transport" };
            var tensor = new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { 1, 3, Size, Size } };
            if (inRegion)
            {
                tensor.Parameters["shared_memory_region"] = new InferParameter { StringParam = "images" };
                tensor.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = InBytes };
                tensor.Parameters["shared_memory_offset"] = new InferParameter { Int64Param = id * InBytes };
            }
            else
            {
                request.RawInputContents.Add(Google.Protobuf.ByteString.CopyFrom(MemoryMarshal.AsBytes(Image(id).AsSpan())));
            }

            request.Inputs.Add(tensor);
            var response = await grpc.ModelInferAsync(request, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: Ct);
            return MemoryMarshal.Cast<byte, float>(response.RawOutputContents[0].Span).ToArray();
        }

        var inRegionCount = 0;
        var calls = new List<(int Id, Task<float[]> Answer)>();
        for (var id = 0; id < Requests; id++)
        {
            var inRegion = id % 3 != 2;
            inRegionCount += inRegion ? 1 : 0;
            calls.Add((id, id % 2 == 0 ? Http(id, inRegion) : Grpc(id, inRegion)));
        }

        foreach (var (id, answer) in calls)
        {
            Assert.Equal(Expected(id), await answer.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        }

        Assert.True(server.Models.Models.Single().Statistics.Snapshot().ExecutionCount < Requests, "some requests were merged into one batch");
        using (var r = await http.PostAsync(new Uri($"/v2/{(device is null ? "system" : "cuda")}sharedmemory/unregister", UriKind.Relative), JsonContent.Create(new { }), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }

        if (device is not null)
        {
            Assert.Equal(inRegionCount, engine.Direct);
            Assert.Equal(0, engine.Registered);
            return;
        }

        lock (log)
        {
            if (registrationFails)
            {
                // Not page-locked: the rows go through the staging copy (straight from the region), and the log says so once.
                Assert.Equal(0, engine.Direct);
                Assert.Single(log, l => l.Contains("system shared memory region 'images' could not be page-locked for transport (the test driver refuses)", StringComparison.Ordinal));
            }
            else
            {
                Assert.Equal(inRegionCount, engine.Direct);
                Assert.Equal(1, engine.Registered);
                Assert.Equal(1, engine.Unregistered);
                Assert.Single(log, l => l.Contains("system shared memory region 'images'", StringComparison.Ordinal) && l.Contains("page-locked for transport", StringComparison.Ordinal));
            }
        }
    }
}
