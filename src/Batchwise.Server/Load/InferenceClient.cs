using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Load;

/// <summary>A model input as a server's metadata describes it (-1: any size).</summary>
/// <param name="Name">Input name.</param>
/// <param name="Datatype">Protocol datatype (FP32, INT64, ...).</param>
/// <param name="Shape">Declared shape.</param>
public sealed record InputDescription(string Name, string Datatype, long[] Shape);

/// <summary>How one inference call ended: success, or the kind of failure (HTTP status, gRPC code, exception).</summary>
/// <param name="Ok">True on success.</param>
/// <param name="Error">Failure kind, e.g. http_503, grpc_Unavailable, HttpRequestException.</param>
public readonly record struct CallOutcome(bool Ok, string? Error);

/// <summary>A client of any Open Inference Protocol server: reads model metadata and sends one prepared request repeatedly.</summary>
public abstract class InferenceClient : IDisposable
{
    /// <summary>
    /// Opens a client for <paramref name="protocol"/> (http or grpc) at <paramref name="url"/>; HTTP sends binary tensor
    /// data unless <paramref name="jsonData"/>. <paramref name="cuda"/> is the CUDA IPC for --shared-memory cuda (null: the registered one).
    /// </summary>
    public static InferenceClient Create(string protocol, Uri url, TimeSpan requestTimeout, bool jsonData = false, string sharedMemory = "none", ICudaIpc? cuda = null, string grpcClient = "frames")
    {
        InferenceClient client = protocol.ToLowerInvariant() switch
        {
            "http" => new HttpInferenceClient(url, requestTimeout, jsonData),
            "grpc" => new GrpcInferenceClient(url, requestTimeout, grpcClient switch
            {
                "frames" => url.Scheme == Uri.UriSchemeHttp,
                "grpc-dotnet" => false,
                _ => throw new BatchwiseException($"Unknown --grpc-client '{grpcClient}'", "Use frames or grpc-dotnet."),
            }),
            _ => throw new BatchwiseException($"Unknown protocol '{protocol}'", "Use --protocol http or --protocol grpc."),
        };
        try
        {
            client.SharedMemory = sharedMemory.ToLowerInvariant() switch
            {
                "none" or "system" => sharedMemory.ToLowerInvariant(),
                "cuda" => "cuda",
                _ => throw new BatchwiseException($"Unknown --shared-memory '{sharedMemory}'", "Use none, system or cuda."),
            };
            if (client.SharedMemory == "cuda")
            {
                var reason = string.Empty;
                client._cuda = cuda ?? CudaIpc.TryCreate(out reason)
                    ?? throw new BatchwiseException($"--shared-memory cuda needs an NVIDIA GPU on the load client, and this one has none usable ({reason})", "Run the load generator on the server's GPU host, or use --shared-memory system (same host) or none.");
            }
        }
        catch
        {
            client.Dispose();
            throw;
        }

        return client;
    }

    /// <summary>Where inputs travel: none (in each request), system (a POSIX shared memory region registered with the server), cuda (device memory on GPU 0 of this host, registered through its CUDA IPC handle).</summary>
    public string SharedMemory { get; private set; } = "none";

    private ICudaIpc? _cuda;
    private IExportedDeviceMemory? _deviceRegion;
    private bool _cudaRegistered;

    /// <summary>The registered input region's name, while there is one.</summary>
    protected string? RegionName { get; private set; }

    private string? _regionPath;

    /// <summary>
    /// Builds the request once for repeated sends; with system shared memory, first writes the inputs into a new POSIX
    /// shared memory object and registers it, so each request carries only references to it.
    /// </summary>
    public async Task PrepareAsync(string model, IReadOnlyList<(string Name, Tensor Tensor)> inputs, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (SharedMemory == "system")
        {
            var key = $"/batchwise-load-{Environment.ProcessId}-{Guid.NewGuid():N}";
            _regionPath = "/dev/shm" + key;
            long size = inputs.Sum(i => (long)i.Tensor.Data.Length);
            try
            {
                using var f = new FileStream(_regionPath, FileMode.CreateNew, FileAccess.Write);
                foreach (var (_, t) in inputs)
                {
                    f.Write(t.Data);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new BatchwiseException($"Cannot create shared memory object '{_regionPath}': {e.Message}", "Run on Linux with /dev/shm writable, or use --shared-memory none.", e);
            }

            var name = key.TrimStart('/');
            await RegisterSystemRegionAsync(name, key, size, cancellationToken).ConfigureAwait(false);
            RegionName = name;
        }
        else if (SharedMemory == "cuda")
        {
            // Device memory on GPU 0 holding every input one after another (copied host to device once), registered
            // through its IPC handle; every request then names it. The server must run on this host (CUDA IPC is local).
            long size = Math.Max(1, inputs.Sum(i => (long)i.Tensor.Data.Length));
            _deviceRegion = _cuda!.Allocate(0, size);
            var offsets = RegionOffsets(inputs);
            for (var i = 0; i < inputs.Count; i++)
            {
                _deviceRegion.Write(offsets[i], inputs[i].Tensor.Data);
            }

            var name = $"batchwise-load-cuda-{Environment.ProcessId}-{Guid.NewGuid():N}";
            await RegisterCudaRegionAsync(name, _deviceRegion.IpcHandle(), 0, size, cancellationToken).ConfigureAwait(false);
            _cudaRegistered = true;
            RegionName = name;
        }

        Prepare(model, inputs);
    }

    /// <summary>Unregisters the input region (if any) and removes its shared memory object.</summary>
    public async Task ReleaseSharedMemoryAsync()
    {
        if (RegionName is { } name)
        {
            RegionName = null;
            try
            {
                if (_cudaRegistered)
                {
                    _cudaRegistered = false;
                    await UnregisterCudaRegionAsync(name).ConfigureAwait(false);
                }
                else
                {
                    await UnregisterSystemRegionAsync(name).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is HttpRequestException or RpcException or TaskCanceledException)
            {
                // The server may be gone; the object is removed below either way.
            }
        }

        // Freed only after the server let go of it (or could not be asked): the server's mapping keeps the memory alive anyway.
        _deviceRegion?.Dispose();
        _deviceRegion = null;
        if (_regionPath is not null && File.Exists(_regionPath))
        {
            File.Delete(_regionPath);
        }

        _regionPath = null;
    }

    /// <summary>Registers a system shared memory region with the server.</summary>
    protected abstract Task RegisterSystemRegionAsync(string name, string key, long byteSize, CancellationToken cancellationToken);

    /// <summary>Unregisters a system shared memory region.</summary>
    protected abstract Task UnregisterSystemRegionAsync(string name);

    /// <summary>Registers a CUDA shared memory region (a cudaIpcMemHandle_t) with the server.</summary>
    protected abstract Task RegisterCudaRegionAsync(string name, byte[] rawHandle, int deviceId, long byteSize, CancellationToken cancellationToken);

    /// <summary>Unregisters a CUDA shared memory region.</summary>
    protected abstract Task UnregisterCudaRegionAsync(string name);

    /// <summary>The offset of each input in the region: inputs lie one after another in request order.</summary>
    protected static long[] RegionOffsets(IReadOnlyList<(string Name, Tensor Tensor)> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var offsets = new long[inputs.Count];
        long at = 0;
        for (var i = 0; i < inputs.Count; i++)
        {
            offsets[i] = at;
            at += inputs[i].Tensor.Data.Length;
        }

        return offsets;
    }

    /// <summary>The model's inputs, from its metadata.</summary>
    public abstract Task<IReadOnlyList<InputDescription>> GetInputsAsync(string model, CancellationToken cancellationToken);

    /// <summary>Builds the request once (inputs in binary form, or references to the registered region) for repeated sends.</summary>
    protected abstract void Prepare(string model, IReadOnlyList<(string Name, Tensor Tensor)> inputs);

    /// <summary>Sends the prepared request once.</summary>
    public abstract Task<CallOutcome> InferAsync(CancellationToken cancellationToken);

    /// <inheritdoc/>
    public void Dispose()
    {
        Dispose(true);
        _deviceRegion?.Dispose();
        _deviceRegion = null;
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases connections.</summary>
    protected abstract void Dispose(bool disposing);

    /// <summary>Turns a connection failure into a user-facing error.</summary>
    protected static BatchwiseException Unreachable(Uri url, Exception e) =>
        new($"Cannot reach the inference server at {url}: {e.Message}", "Check the URL and that the server is running (`batchwise serve ...`); gRPC needs its own port (8001 by default).", e);
}

/// <summary>
/// HTTP/REST, by default with Triton's binary tensor data extension (inputs and outputs as raw bytes after the JSON
/// header); with JSON data for servers without that extension.
/// </summary>
internal sealed class HttpInferenceClient : InferenceClient
{
    private readonly HttpClient _http;
    private readonly Uri _url;
    private readonly bool _jsonData;
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly MediaTypeHeaderValue Octets = new("application/octet-stream");
    private byte[] _body = [];
    private int _headerLength;
    private string _headerLengthText = "0";
    private string _path = string.Empty;

    public HttpInferenceClient(Uri url, TimeSpan timeout, bool jsonData)
    {
        _url = url;
        _jsonData = jsonData;
        _http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1), UseProxy = false, UseCookies = false })
        {
            BaseAddress = url,
            Timeout = timeout,
        };
    }

    public override async Task<IReadOnlyList<InputDescription>> GetInputsAsync(string model, CancellationToken cancellationToken)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.GetAsync(new Uri($"v2/models/{Uri.EscapeDataString(model)}", UriKind.Relative), cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw Unreachable(_url, e);
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new BatchwiseException($"GET /v2/models/{model} answered {(int)response.StatusCode}: {text}", "Check the model name (GET /v2/models/NAME must describe it).");
            }

            try
            {
                using var doc = JsonDocument.Parse(text);
                return doc.RootElement.GetProperty("inputs").EnumerateArray()
                    .Select(i => new InputDescription(i.GetProperty("name").GetString()!, i.GetProperty("datatype").GetString()!, i.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray()))
                    .ToList();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new BatchwiseException($"GET /v2/models/{model} did not return model metadata: {e.Message}", "Point the load generator at an Open Inference Protocol server.", e);
            }
        }
    }

    protected override async Task RegisterSystemRegionAsync(string name, string key, long byteSize, CancellationToken cancellationToken)
    {
        using var content = new StringContent(JsonSerializer.Serialize(new Dictionary<string, object> { ["key"] = key, ["offset"] = 0, ["byte_size"] = byteSize }), System.Text.Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri($"v2/systemsharedmemory/region/{Uri.EscapeDataString(name)}/register", UriKind.Relative), content, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new BatchwiseException($"Registering system shared memory region '{name}' failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}", "The server must implement the system_shared_memory extension and run on this host; or use --shared-memory none.");
        }
    }

    protected override async Task UnregisterSystemRegionAsync(string name)
    {
        using var response = await _http.PostAsync(new Uri($"v2/systemsharedmemory/region/{Uri.EscapeDataString(name)}/unregister", UriKind.Relative), null).ConfigureAwait(false);
    }

    protected override async Task RegisterCudaRegionAsync(string name, byte[] rawHandle, int deviceId, long byteSize, CancellationToken cancellationToken)
    {
        var body = new Dictionary<string, object> { ["raw_handle"] = new Dictionary<string, string> { ["b64"] = Convert.ToBase64String(rawHandle) }, ["device_id"] = deviceId, ["byte_size"] = byteSize };
        using var content = new StringContent(JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri($"v2/cudasharedmemory/region/{Uri.EscapeDataString(name)}/register", UriKind.Relative), content, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new BatchwiseException($"Registering CUDA shared memory region '{name}' failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}", "The server must list cuda_shared_memory in GET /v2 and run on this host with a GPU; or use --shared-memory system or none.");
        }
    }

    protected override async Task UnregisterCudaRegionAsync(string name)
    {
        using var response = await _http.PostAsync(new Uri($"v2/cudasharedmemory/region/{Uri.EscapeDataString(name)}/unregister", UriKind.Relative), null).ConfigureAwait(false);
    }

    protected override void Prepare(string model, IReadOnlyList<(string Name, Tensor Tensor)> inputs)
    {
        _path = $"v2/models/{Uri.EscapeDataString(model)}/infer";
        var offsets = RegionOffsets(inputs);
        var region = RegionName;
        using var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            w.WriteStartArray("inputs");
            for (var i = 0; i < inputs.Count; i++)
            {
                var (name, t) = inputs[i];
                w.WriteStartObject();
                TensorCodec.WriteHeader(w, name, t);
                if (region is not null)
                {
                    w.WriteStartObject("parameters");
                    w.WriteString("shared_memory_region", region);
                    w.WriteNumber("shared_memory_byte_size", t.Data.Length);
                    w.WriteNumber("shared_memory_offset", offsets[i]);
                    w.WriteEndObject();
                }
                else if (_jsonData)
                {
                    w.WritePropertyName("data");
                    TensorCodec.WriteJson(w, t);
                }
                else
                {
                    w.WriteStartObject("parameters");
                    w.WriteNumber("binary_data_size", t.Data.Length);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (!_jsonData)
            {
                w.WriteStartObject("parameters");
                w.WriteBoolean("binary_data_output", true);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        _headerLength = (int)json.Length;
        _headerLengthText = _headerLength.ToString(CultureInfo.InvariantCulture);
        if (!_jsonData && region is null)
        {
            foreach (var (_, t) in inputs)
            {
                json.Write(t.Data);
            }
        }

        _body = json.ToArray();
    }

    public override async Task<CallOutcome> InferAsync(CancellationToken cancellationToken)
    {
        using var content = new ByteArrayContent(_body);
        if (_jsonData || RegionName is not null)
        {
            content.Headers.ContentType = Json;
        }
        else
        {
            content.Headers.ContentType = Octets;
            content.Headers.TryAddWithoutValidation(HttpEndpoints.HeaderLength, _headerLengthText);
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_path, UriKind.Relative)) { Content = content };
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
            return response.IsSuccessStatusCode ? new CallOutcome(true, null) : new CallOutcome(false, $"http_{(int)response.StatusCode}");
        }
        catch (HttpRequestException e) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The load point ended", e, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            return new CallOutcome(false, e.GetType().Name);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new CallOutcome(false, "client_timeout");
        }
    }

    protected override void Dispose(bool disposing) => _http.Dispose();
}

/// <summary>
/// gRPC (inference.GRPCInferenceService) with raw_input_contents. ModelInfer calls go, on cleartext URLs, over
/// <see cref="Http2UnaryConnection"/>s (one per call in flight, reused; frames as large as the server allows, each call
/// sent at once) unless Grpc.Net.Client was asked for; everything else goes through Grpc.Net.Client.
/// </summary>
internal sealed class GrpcInferenceClient : InferenceClient
{
    /// <summary>
    /// ModelInfer with the request already serialized: the prepared message's bytes are sent as they are on every call
    /// (no protobuf serialization, no copy of the tensor bytes per request), and the response is not parsed (its status
    /// says whether the call succeeded).
    /// </summary>
    private static readonly Method<byte[], byte[]> ModelInferPrepared = new(
        MethodType.Unary,
        GRPCInferenceService.Descriptor.FullName,
        "ModelInfer",
        new Marshaller<byte[]>((bytes, context) => context.Complete(bytes), context => context.PayloadAsNewBuffer()),
        new Marshaller<byte[]>((bytes, context) => context.Complete(bytes), _ => []));

    private readonly GrpcChannel[] _channels;
    private readonly CallInvoker[] _invokers;
    private readonly GRPCInferenceService.GRPCInferenceServiceClient _client;
    private readonly Uri _url;
    private readonly TimeSpan _timeout;
    private const string ModelInferPath = "/inference.GRPCInferenceService/ModelInfer";
    private readonly bool _frames;
    private readonly string _authority;
    private readonly System.Collections.Concurrent.ConcurrentBag<Http2UnaryConnection> _idle = [];
    private byte[] _request = [];
    private int _next;

    public GrpcInferenceClient(Uri url, TimeSpan timeout, bool frames)
    {
        _url = url;
        _timeout = timeout;
        _frames = frames;
        _authority = $"{url.Host}:{url.Port}";

        // Several HTTP/2 connections, calls spread over them in turn: one connection is one frame reader and one writer
        // on each side, which would serialize every 602 KB message of every worker (SocketsHttpHandler opens a second
        // connection only past the server's stream limit). Each channel has its own handler, so its own connection.
        _channels = [.. Enumerable.Range(0, Connections).Select(_ => GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                UseProxy = false,
                UseCookies = false,
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            },
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
        }))];
        _invokers = [.. _channels.Select(c => c.CreateCallInvoker())];
        _client = new GRPCInferenceService.GRPCInferenceServiceClient(_channels[0]);
    }

    /// <summary>HTTP/2 connections the inference calls are spread over: half the cores, 1 to 8.</summary>
    internal static int Connections => Math.Clamp(Environment.ProcessorCount / 2, 1, 8);

    public override async Task<IReadOnlyList<InputDescription>> GetInputsAsync(string model, CancellationToken cancellationToken)
    {
        try
        {
            var m = await _client.ModelMetadataAsync(new ModelMetadataRequest { Name = model }, deadline: DateTime.UtcNow + _timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
            return m.Inputs.Select(i => new InputDescription(i.Name, i.Datatype, i.Shape.ToArray())).ToList();
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unimplemented)
        {
            throw Unreachable(_url, e);
        }
        catch (RpcException e)
        {
            throw new BatchwiseException($"ModelMetadata for '{model}' failed: {e.Status.StatusCode} {e.Status.Detail}", "Check the model name.", e);
        }
    }

    protected override async Task RegisterSystemRegionAsync(string name, string key, long byteSize, CancellationToken cancellationToken)
    {
        try
        {
            await _client.SystemSharedMemoryRegisterAsync(new SystemSharedMemoryRegisterRequest { Name = name, Key = key, Offset = 0, ByteSize = (ulong)byteSize }, deadline: DateTime.UtcNow + _timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new BatchwiseException($"Registering system shared memory region '{name}' failed: {e.Status.StatusCode} {e.Status.Detail}", "The server must implement the system_shared_memory extension and run on this host; or use --shared-memory none.", e);
        }
    }

    protected override async Task UnregisterSystemRegionAsync(string name) =>
        await _client.SystemSharedMemoryUnregisterAsync(new SystemSharedMemoryUnregisterRequest { Name = name }, deadline: DateTime.UtcNow + _timeout).ConfigureAwait(false);

    protected override async Task RegisterCudaRegionAsync(string name, byte[] rawHandle, int deviceId, long byteSize, CancellationToken cancellationToken)
    {
        try
        {
            await _client.CudaSharedMemoryRegisterAsync(new CudaSharedMemoryRegisterRequest { Name = name, RawHandle = ByteString.CopyFrom(rawHandle), DeviceId = deviceId, ByteSize = (ulong)byteSize }, deadline: DateTime.UtcNow + _timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new BatchwiseException($"Registering CUDA shared memory region '{name}' failed: {e.Status.StatusCode} {e.Status.Detail}", "The server must list cuda_shared_memory in its metadata and run on this host with a GPU; or use --shared-memory system or none.", e);
        }
    }

    protected override async Task UnregisterCudaRegionAsync(string name) =>
        await _client.CudaSharedMemoryUnregisterAsync(new CudaSharedMemoryUnregisterRequest { Name = name }, deadline: DateTime.UtcNow + _timeout).ConfigureAwait(false);

    protected override void Prepare(string model, IReadOnlyList<(string Name, Tensor Tensor)> inputs)
    {
        var request = new ModelInferRequest { ModelName = model };
        var offsets = RegionOffsets(inputs);
        for (var i = 0; i < inputs.Count; i++)
        {
            var (name, t) = inputs[i];
            var input = new ModelInferRequest.Types.InferInputTensor { Name = name, Datatype = t.ElementType.ProtocolName() };
            input.Shape.AddRange(t.Shape);
            if (RegionName is { } region)
            {
                input.Parameters["shared_memory_region"] = new InferParameter { StringParam = region };
                input.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = t.Data.Length };
                input.Parameters["shared_memory_offset"] = new InferParameter { Int64Param = offsets[i] };
                request.Inputs.Add(input);
                continue;
            }

            request.Inputs.Add(input);
            request.RawInputContents.Add(ByteString.CopyFrom(t.Data));
        }

        _request = request.ToByteArray();
    }

    public override Task<CallOutcome> InferAsync(CancellationToken cancellationToken) =>
        _frames ? InferOverFramesAsync(cancellationToken, null) : InferOverChannelAsync(cancellationToken);

    /// <summary>One ModelInfer call over an idle (or new) <see cref="Http2UnaryConnection"/>; <paramref name="response"/> receives the response message when given.</summary>
    internal async Task<CallOutcome> InferOverFramesAsync(CancellationToken cancellationToken, MemoryStream? response)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_timeout);
        Http2UnaryConnection? connection = null;
        try
        {
            while (_idle.TryTake(out connection) && !await connection.IsUsableAsync(timeout.Token).ConfigureAwait(false))
            {
                connection.Dispose();
                connection = null;
            }

            connection ??= await Http2UnaryConnection.OpenAsync(_url.Host, _url.Port, timeout.Token).ConfigureAwait(false);

            return await connection.CallAsync(_authority, ModelInferPath, _request, timeout.Token, response).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException)
        {
            return new CallOutcome(false, "client_timeout");
        }
        catch (Exception e) when ((e is IOException or System.Net.Sockets.SocketException) && cancellationToken.IsCancellationRequested)
        {
            // A socket operation aborted because the point ended (its read or write cancelled mid-call) is not the server's error.
            throw new OperationCanceledException("The load point ended", e, cancellationToken);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or InvalidDataException or ArgumentOutOfRangeException or IndexOutOfRangeException)
        {
            return new CallOutcome(false, e.GetType().Name);
        }
        finally
        {
            if (connection is { Healthy: true })
            {
                _idle.Add(connection);
            }
            else
            {
                connection?.Dispose();
            }
        }
    }

    private async Task<CallOutcome> InferOverChannelAsync(CancellationToken cancellationToken)
    {
        try
        {
            var invoker = _invokers[(int)((uint)Interlocked.Increment(ref _next) % (uint)_invokers.Length)];
            using var call = invoker.AsyncUnaryCall(ModelInferPrepared, null, new CallOptions(deadline: DateTime.UtcNow + _timeout, cancellationToken: cancellationToken), _request);
            await call.ResponseAsync.ConfigureAwait(false);
            return new CallOutcome(true, null);
        }
        catch (RpcException e) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The load point ended", e, cancellationToken);
        }
        catch (RpcException e)
        {
            return new CallOutcome(false, $"grpc_{e.StatusCode}");
        }
    }

    protected override void Dispose(bool disposing)
    {
        while (_idle.TryTake(out var connection))
        {
            connection.Dispose();
        }

        foreach (var channel in _channels)
        {
            channel.Dispose();
        }
    }
}

/// <summary>Builds request inputs from model metadata: -1 dimensions become the batch size (first) or what --shape gives.</summary>
public static class LoadInputs
{
    /// <summary>Random tensors (seeded) for each input.</summary>
    /// <summary>
    /// Random tensors (seeded) for each input. <paramref name="shapes"/> takes bench's --shape syntax: INPUT:DIMS with
    /// `batch` for the batch axis; SYMBOL=SIZE is refused, as a server's metadata names no dimensions (it declares -1).
    /// </summary>
    public static IReadOnlyList<(string Name, Tensor Tensor)> Generate(IReadOnlyList<InputDescription> inputs, int batchSize, Benchmarking.ShapeBindings shapes, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(shapes);
        if (shapes.Symbols.Count > 0)
        {
            var (symbol, size) = shapes.Symbols.First();
            throw new BatchwiseException(
                $"--shape {symbol}={size}: a server's model metadata names no dimensions (it declares them -1), so a symbol cannot be bound",
                $"Give the input's whole shape with `batch` for the batch axis, e.g. --shape {inputs.FirstOrDefault()?.Name ?? "INPUT"}:batch,{size}.");
        }

        var specs = new List<TensorSpec>();
        foreach (var input in inputs)
        {
            if (string.Equals(input.Datatype, "BYTES", StringComparison.OrdinalIgnoreCase))
            {
                throw new BatchwiseException($"Input '{input.Name}' is BYTES; generating string inputs is not supported yet", "Load-test a model with numeric inputs.");
            }

            specs.Add(new TensorSpec(input.Name, ElementTypes.FromProtocolName(input.Datatype), [.. input.Shape.Select(d => d >= 0 ? Dim.Fixed(d) : new Dim(null, null))]));
        }

        var batchable = specs.Count > 0 && specs.All(s => s.Shape.Count > 0 && s.Shape[0].IsDynamic);
        var axis = batchable ? new BatchAxis(true, "batch", null) : new BatchAxis(false, null, "the server declares a fixed first dimension");
        var resolved = shapes.Resolve(specs, axis, batchSize);
        var rng = new Random(seed);
        var result = new List<(string, Tensor)>();
        foreach (var input in inputs)
        {
            if (string.Equals(input.Datatype, "BYTES", StringComparison.OrdinalIgnoreCase))
            {
                throw new BatchwiseException($"Input '{input.Name}' is BYTES; generating string inputs is not supported yet", "Load-test a model with numeric inputs.");
            }

            var type = ElementTypes.FromProtocolName(input.Datatype);
            var shape = resolved[result.Count];
            var t = Tensor.Zeros(type, shape);
            var n = (int)t.ElementCount;
            switch (type)
            {
                case ElementType.Float: { var s = t.AsSpan<float>(); for (var i = 0; i < n; i++) { s[i] = (float)rng.NextDouble(); } break; }
                case ElementType.Double: { var s = t.AsSpan<double>(); for (var i = 0; i < n; i++) { s[i] = rng.NextDouble(); } break; }
                case ElementType.Float16: { var s = t.AsSpan<Half>(); for (var i = 0; i < n; i++) { s[i] = (Half)rng.NextDouble(); } break; }
                case ElementType.Int64: { var s = t.AsSpan<long>(); for (var i = 0; i < n; i++) { s[i] = rng.Next(0, 10); } break; }
                case ElementType.Int32: { var s = t.AsSpan<int>(); for (var i = 0; i < n; i++) { s[i] = rng.Next(0, 10); } break; }
                case ElementType.Bool or ElementType.UInt8 or ElementType.Int8: { for (var i = 0; i < n; i++) { t.Data[i] = (byte)rng.Next(0, 2); } break; }
                default: rng.NextBytes(t.Data); break;
            }

            result.Add((input.Name, t));
        }

        return result;
    }

    internal static string Describe(IReadOnlyList<(string Name, Tensor Tensor)> inputs) =>
        new StringBuilder().AppendJoin(", ", inputs.Select(i => $"{i.Name}: {i.Tensor}")).ToString();
}
