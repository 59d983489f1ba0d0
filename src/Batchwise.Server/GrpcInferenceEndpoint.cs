using System.Diagnostics;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.Protocol;
using Batchwise.Server.SharedMemory;
using Google.Protobuf;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>
/// The Open Inference Protocol's gRPC service (inference.GRPCInferenceService): each public method of the service's name
/// is bound to it by <see cref="GrpcInferenceMethods"/>.
/// </summary>
internal sealed class GrpcInferenceEndpoint(ModelRepository models, ServerOptions options, RequestTracing tracing, RequestAdmission admission, SystemSharedMemoryRegistry sharedMemory)
{
    public Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = models.IsReady });

    // Triton answers ready: false for a model (or version) it does not serve, not NOT_FOUND.
    public Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ModelReadyResponse { Ready = models.IsModelReady(request.Name, request.Version) });

    public Task<ModelConfigResponse> ModelConfig(ModelConfigRequest request, ServerCallContext context) =>
        Guard(() => Task.FromResult(new ModelConfigResponse { Config = TritonModelConfig.Describe(models.Find(request.Name, request.Version)) }));

    public Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context)
    {
        var response = new ServerMetadataResponse { Name = InferenceServer.Name, Version = InferenceServer.Version };
        response.Extensions.AddRange(InferenceServer.ExtensionsWith(sharedMemory));
        return Task.FromResult(response);
    }

    public Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context) => Guard(() =>
    {
        var model = models.Find(request.Name, request.Version);
        var response = new ModelMetadataResponse { Name = model.Name, Platform = model.Platform };
        response.Versions.Add(model.Version);
        response.Inputs.AddRange(model.Inputs.Select(Describe));
        response.Outputs.AddRange(model.Outputs.Select(Describe));
        return Task.FromResult(response);
    });

    public Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
    {
        // Pooled input buffers (raw_input_contents, as GrpcInferRequestReader read them, and copies out of shared memory)
        // go back once the response has been sent, not when the handler returns (the response is serialized after it,
        // and an output may be an input's own array).
        var buffers = request.PooledInputs ?? new RequestBuffers(TensorBufferPool.Shared);
        request.PooledInputs = null;
        Microsoft.AspNetCore.Http.HttpContext? http = null;
        try
        {
            http = context.GetHttpContext();
        }
        catch (InvalidOperationException)
        {
            // Not hosted by ASP.NET Core (a test double): no pooling.
        }

        http?.Response.RegisterForDispose(buffers);
        return Guard(() => InferAsync(request, context.RequestHeaders.GetValue("traceparent"), context.CancellationToken, http is null ? null : buffers));
    }

    /// <summary>
    /// Bidirectional streaming inference, as Triton's: requests run concurrently as they arrive (at most
    /// <see cref="StreamConcurrency"/> at once per stream), each answered when done; a failed request is answered with
    /// its error_message (and its id) while the stream goes on.
    /// </summary>
    public async Task ModelStreamInfer(IAsyncStreamReader<ModelInferRequest> requestStream, IServerStreamWriter<ModelStreamInferResponse> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        using var slots = new SemaphoreSlim(StreamConcurrency);
        using var writeLock = new SemaphoreSlim(1);
        var running = new List<Task>();
        async Task AnswerAsync(ModelInferRequest request)
        {
            // The request's pooled buffers go back once its response is written (an output may be an input's own array).
            using var buffers = request.PooledInputs ?? new RequestBuffers(TensorBufferPool.Shared);
            request.PooledInputs = null;
            ModelStreamInferResponse response;
            try
            {
                response = new ModelStreamInferResponse { InferResponse = await InferAsync(request, context.RequestHeaders.GetValue("traceparent"), ct, buffers).ConfigureAwait(false) };
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                var message = e is InferenceError or BatchwiseException ? e.Message : $"{e.GetType().Name}: {e.Message}";
                response = new ModelStreamInferResponse
                {
                    ErrorMessage = message,
                    InferResponse = new ModelInferResponse { ModelName = request.ModelName, ModelVersion = request.ModelVersion, Id = request.Id },
                };
            }
            finally
            {
                slots.Release();
            }

            await writeLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                await responseStream.WriteAsync(response, ct).ConfigureAwait(false);
            }
            finally
            {
                writeLock.Release();
            }
        }

        try
        {
            await foreach (var request in requestStream.ReadAllAsync(ct).ConfigureAwait(false))
            {
                await slots.WaitAsync(ct).ConfigureAwait(false);
                running.Add(AnswerAsync(request));
                running.RemoveAll(t => t.IsCompletedSuccessfully);
            }
        }
        finally
        {
            // Answer everything already read before the call ends (the client half-closed, or went away).
            await Task.WhenAll(running).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Requests of one stream running at once; further requests wait to be read (the client sees back-pressure).</summary>
    internal const int StreamConcurrency = 64;

    public Task<SystemSharedMemoryRegisterResponse> SystemSharedMemoryRegister(SystemSharedMemoryRegisterRequest request, ServerCallContext context) => Guard(() =>
    {
        sharedMemory.Register(request.Name, request.Key, (long)Math.Min(request.Offset, long.MaxValue), (long)Math.Min(request.ByteSize, long.MaxValue));
        return Task.FromResult(new SystemSharedMemoryRegisterResponse());
    });

    public Task<SystemSharedMemoryUnregisterResponse> SystemSharedMemoryUnregister(SystemSharedMemoryUnregisterRequest request, ServerCallContext context) => Guard(() =>
    {
        sharedMemory.Unregister(request.Name);
        return Task.FromResult(new SystemSharedMemoryUnregisterResponse());
    });

    public Task<SystemSharedMemoryStatusResponse> SystemSharedMemoryStatus(SystemSharedMemoryStatusRequest request, ServerCallContext context) => Guard(() =>
    {
        var response = new SystemSharedMemoryStatusResponse();
        foreach (var r in sharedMemory.Status(request.Name))
        {
            response.Regions[r.Name] = new SystemSharedMemoryStatusResponse.Types.RegionStatus { Name = r.Name, Key = r.Key, Offset = (ulong)r.Offset, ByteSize = (ulong)r.ByteSize };
        }

        return Task.FromResult(response);
    });

    public Task<CudaSharedMemoryRegisterResponse> CudaSharedMemoryRegister(CudaSharedMemoryRegisterRequest request, ServerCallContext context) => Guard(() =>
    {
        sharedMemory.Cuda.Register(request.Name, request.RawHandle.Span, request.DeviceId, (long)Math.Min(request.ByteSize, long.MaxValue));
        return Task.FromResult(new CudaSharedMemoryRegisterResponse());
    });

    public Task<CudaSharedMemoryStatusResponse> CudaSharedMemoryStatus(CudaSharedMemoryStatusRequest request, ServerCallContext context) => Guard(() =>
    {
        var response = new CudaSharedMemoryStatusResponse();
        foreach (var r in sharedMemory.Cuda.Status(request.Name))
        {
            response.Regions[r.Name] = new CudaSharedMemoryStatusResponse.Types.RegionStatus { Name = r.Name, DeviceId = (ulong)r.DeviceId, ByteSize = (ulong)r.ByteSize };
        }

        return Task.FromResult(response);
    });

    public Task<CudaSharedMemoryUnregisterResponse> CudaSharedMemoryUnregister(CudaSharedMemoryUnregisterRequest request, ServerCallContext context) => Guard(() =>
    {
        sharedMemory.Cuda.Unregister(request.Name);
        return Task.FromResult(new CudaSharedMemoryUnregisterResponse());
    });

    public Task<TraceSettingResponse> TraceSetting(TraceSettingRequest request, ServerCallContext context) => Guard(() =>
    {
        var model = string.IsNullOrEmpty(request.ModelName) ? null : models.Find(request.ModelName).Name;
        var settings = request.Settings.Count == 0
            ? options.Traces.Describe(model)
            : options.Traces.Update(model, request.Settings.ToDictionary(s => s.Key, s => (IReadOnlyList<string>?)s.Value.Value.ToList()));
        var response = new TraceSettingResponse();
        foreach (var (key, values) in settings)
        {
            var value = new TraceSettingResponse.Types.SettingValue();
            value.Value.AddRange(values);
            response.Settings.Add(key, value);
        }

        return Task.FromResult(response);
    });

    public Task<LogSettingsResponse> LogSettings(LogSettingsRequest request, ServerCallContext context) => Guard(() =>
    {
        var requested = new Dictionary<string, object>(StringComparer.Ordinal);
        foreach (var (key, value) in request.Settings)
        {
            requested[key] = value.ParameterChoiceCase switch
            {
                LogSettingsRequest.Types.SettingValue.ParameterChoiceOneofCase.BoolParam => value.BoolParam,
                LogSettingsRequest.Types.SettingValue.ParameterChoiceOneofCase.Uint32Param => (long)value.Uint32Param,
                LogSettingsRequest.Types.SettingValue.ParameterChoiceOneofCase.StringParam => value.StringParam,
                _ => throw InferenceError.BadRequest($"Log setting '{key}' has no value"),
            };
        }

        var s = requested.Count > 0 ? options.Logs.Update(requested) : options.Logs.Current;
        var response = new LogSettingsResponse();
        response.Settings.Add("log_file", new LogSettingsResponse.Types.SettingValue { StringParam = string.Empty });
        response.Settings.Add("log_info", new LogSettingsResponse.Types.SettingValue { BoolParam = s.Info });
        response.Settings.Add("log_warning", new LogSettingsResponse.Types.SettingValue { BoolParam = s.Warning });
        response.Settings.Add("log_error", new LogSettingsResponse.Types.SettingValue { BoolParam = s.Error });
        response.Settings.Add("log_verbose_level", new LogSettingsResponse.Types.SettingValue { Uint32Param = (uint)s.VerboseLevel });
        response.Settings.Add("log_format", new LogSettingsResponse.Types.SettingValue { StringParam = s.Format });
        return Task.FromResult(response);
    });

    public Task<ModelStatisticsResponse> ModelStatistics(ModelStatisticsRequest request, ServerCallContext context) => Guard(() =>
    {
        IEnumerable<ServedModel> selected = string.IsNullOrEmpty(request.Name) ? models.Models : [models.Find(request.Name, request.Version)];
        var response = new ModelStatisticsResponse();
        response.ModelStats.AddRange(selected.Select(m => Describe(m.Statistics.Snapshot())));
        return Task.FromResult(response);
    });

    public Task<RepositoryIndexResponse> RepositoryIndex(RepositoryIndexRequest request, ServerCallContext context) => Guard(() =>
    {
        var response = new RepositoryIndexResponse();
        response.Models.AddRange(models.Index(request.Ready).Select(e => new RepositoryIndexResponse.Types.ModelIndex
        {
            Name = e.Name,
            Version = e.Version ?? string.Empty,
            State = e.State,
            Reason = e.Reason,
        }));
        return Task.FromResult(response);
    });

    public Task<RepositoryModelLoadResponse> RepositoryModelLoad(RepositoryModelLoadRequest request, ServerCallContext context) => Guard(async () =>
    {
        ModelConfig? config = null;
        foreach (var (key, value) in request.Parameters)
        {
            if (key == "config")
            {
                config = value.ParameterChoiceCase == ModelRepositoryParameter.ParameterChoiceOneofCase.StringParam
                    ? HttpEndpoints.ParseConfig(request.ModelName, value.StringParam)
                    : throw InferenceError.BadRequest($"load '{request.ModelName}': parameter 'config' must be a string holding the model's config.json");
            }
            else if (key.StartsWith("file:", StringComparison.Ordinal))
            {
                throw InferenceError.BadRequest($"load '{request.ModelName}': model files in the request ('{key}') are not supported; put the model in the repository folder and load it by name");
            }
        }

        await models.LoadAsync(request.ModelName, config).ConfigureAwait(false);
        return new RepositoryModelLoadResponse();
    });

    public Task<RepositoryModelUnloadResponse> RepositoryModelUnload(RepositoryModelUnloadRequest request, ServerCallContext context) => Guard(async () =>
    {
        await models.UnloadAsync(request.ModelName).ConfigureAwait(false);
        return new RepositoryModelUnloadResponse();
    });

    /// <summary>One inference request: a lease on the model for its whole life, its time recorded in the model's statistics.</summary>
    private async Task<ModelInferResponse> InferAsync(ModelInferRequest request, string? traceParent, CancellationToken cancellationToken, RequestBuffers? buffers = null)
    {
        var received = Stopwatch.GetTimestamp();
        using var lease = models.Acquire(request.ModelName, request.ModelVersion);
        var timer = lease.Model.Statistics.Start(received);
        timer.TraceWith(tracing, "grpc", traceParent);
        timer.Identify(request.Id);
        try
        {
            var response = await InferAsync(lease.Model, request, timer, admission, sharedMemory, buffers, cancellationToken).ConfigureAwait(false);
            timer.Succeeded();
            return response;
        }
        catch
        {
            timer.Failed(cancellationToken.IsCancellationRequested ? "cancelled" : "invalid");
            throw;
        }
    }

    private static async Task<ModelInferResponse> InferAsync(ServedModel model, ModelInferRequest request, RequestTimer timer, RequestAdmission admission, SystemSharedMemoryRegistry sharedMemory, RequestBuffers? buffers, CancellationToken cancellationToken)
    {
        using var lease = admission.Admit();
        using var shm = new SharedMemoryUse(sharedMemory);

        // The message is already parsed in memory: charge what it holds before decoding anything from it.
        lease.Charge(request.RawInputContents.Sum(r => (long)r.Length) + request.Inputs.Sum(i => TensorCodec.ContentsBytes(i.Contents)));
        var priority = request.Parameters.TryGetValue("priority", out var p) ? RequestValidator.Priority(RequestValidator.Parameter(p)) : 0;
        var timeout = request.Parameters.TryGetValue("timeout", out var t) ? RequestValidator.Timeout(RequestValidator.Parameter(t)) : null;
        var indices = request.Outputs.Count > 0
            ? request.Outputs.Select(o => (model.OutputIndex(o.Name), ClassCount(o), SharedMemoryParameters(shm, $"Output '{o.Name}'", o.Parameters))).ToList()
            : Enumerable.Range(0, model.Outputs.Count).Select(i => (i, 0, (SharedMemoryRef?)null)).ToList();
        var parsed = Decode(request, model, lease, shm, buffers);
        var targets = HttpEndpoints.OutputTargets(model, indices.Select(o => (o.Item1, o.Item2, o.Item3)));
        var outputs = await model.InferAsync(parsed, priority, timeout, cancellationToken, timer, targets).ConfigureAwait(false);
        var response = new ModelInferResponse { ModelName = model.Name, ModelVersion = model.Version, Id = request.Id };
        foreach (var (i, classCount, target) in indices)
        {
            var tensor = model.Present(outputs, i, classCount);
            var output = new ModelInferResponse.Types.InferOutputTensor { Name = model.Outputs[i].Name, Datatype = tensor.ElementType.ProtocolName() };
            output.Shape.AddRange(tensor.Shape);
            response.Outputs.Add(output);
            if (target is not null)
            {
                // The data goes into the region; the response says where and carries no raw contents for it, as Triton's.
                HttpEndpoints.WriteSharedMemory(output.Name, tensor, target, targets?[i]);
                output.Parameters["shared_memory_region"] = new InferParameter { StringParam = target.Region.Name };
                output.Parameters["shared_memory_byte_size"] = new InferParameter { Int64Param = tensor.ByteCount };
                continue;
            }

            response.RawOutputContents.Add(UnsafeByteOperations.UnsafeWrap(tensor.Data));
        }

        return response;
    }

    /// <summary>The classification extension's class count for an output (0: the raw output).</summary>
    private static int ClassCount(ModelInferRequest.Types.InferRequestedOutputTensor output)
    {
        if (!output.Parameters.TryGetValue("classification", out var p))
        {
            return 0;
        }

        var count = p.ParameterChoiceCase switch
        {
            InferParameter.ParameterChoiceOneofCase.Int64Param => p.Int64Param,
            InferParameter.ParameterChoiceOneofCase.Uint64Param => p.Uint64Param > int.MaxValue ? -1 : (long)p.Uint64Param,
            _ => -1,
        };
        return count is >= 1 and <= int.MaxValue
            ? (int)count
            : throw InferenceError.BadRequest($"Output '{output.Name}': parameter 'classification' must be a positive integer (the number of classes to return)");
    }

    private static Protocol.ModelStatistics Describe(ModelStatisticsSnapshot s)
    {
        static StatisticDuration D(DurationTotal d) => new() { Count = (ulong)d.Count, Ns = (ulong)d.Nanoseconds };
        var stats = new Protocol.ModelStatistics
        {
            Name = s.Name,
            Version = s.Version,
            LastInference = (ulong)s.LastInferenceMs,
            InferenceCount = (ulong)s.InferenceCount,
            ExecutionCount = (ulong)s.ExecutionCount,
            InferenceStats = new InferStatistics
            {
                Success = D(s.Success),
                Fail = D(s.Fail),
                Queue = D(s.Queue),
                ComputeInput = D(s.ComputeInput),
                ComputeInfer = D(s.ComputeInfer),
                ComputeOutput = D(s.ComputeOutput),
                CacheHit = new StatisticDuration(),
                CacheMiss = new StatisticDuration(),
            },
        };
        stats.BatchStats.AddRange(s.BatchStats.Select(b => new InferBatchStatistics
        {
            BatchSize = (ulong)b.BatchSize,
            ComputeInput = D(b.ComputeInput),
            ComputeInfer = D(b.ComputeInfer),
            ComputeOutput = D(b.ComputeOutput),
        }));
        return stats;
    }

    /// <summary>
    /// Decodes the inputs with the same rules as HTTP: shapes against the model, sizes with overflow checks, data
    /// present against the size claimed, the total against --max-request-bytes and charged, and only then allocated.
    /// </summary>
    internal static List<NamedTensor> Decode(ModelInferRequest request, ServedModel model, RequestAdmission.Lease lease, SharedMemoryUse? shm = null, RequestBuffers? buffers = null)
    {
        shm ??= SharedMemoryUse.None;

        // Inputs in shared memory have no raw_input_contents entry (as tritonclient sends them): raw entries follow the others in order.
        var sources = request.Inputs.Select(input => SharedMemoryParameters(shm, $"Input '{input.Name}'", input.Parameters)).ToList();
        var inline = sources.Count(source => source is null);
        var raw = request.RawInputContents.Count > 0;
        if (raw && request.RawInputContents.Count != inline)
        {
            throw InferenceError.BadRequest($"raw_input_contents has {request.RawInputContents.Count} entries for {inline} inputs not in shared memory; give one per such input");
        }

        var planned = new List<(string Name, ElementType Type, long[] Shape, int Raw, SharedMemoryRef? Source)>(request.Inputs.Count);
        long total = 0;
        var rawIndex = 0;
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            var type = TensorCodec.ParseDatatype(input.Name, input.Datatype);
            var shape = input.Shape.ToArray();
            model.CheckInput(input.Name, type, shape);
            long bytes;
            if (sources[i] is { } source)
            {
                if (input.Contents is not null)
                {
                    throw InferenceError.BadRequest($"Input '{input.Name}' names a shared memory region and also sets contents; send one or the other");
                }

                bytes = type == ElementType.String ? source.ByteSize : RequestValidator.ByteCount(input.Name, type, shape);
                if (type != ElementType.String && source.ByteSize != bytes)
                {
                    throw InferenceError.BadRequest($"Input '{input.Name}': shared_memory_byte_size is {source.ByteSize}; {type.ProtocolName()} {Tensor.ShapeText(shape)} needs {bytes}");
                }

                planned.Add((input.Name, type, shape, -1, source));
                total = total > long.MaxValue - bytes ? long.MaxValue : total + bytes;
                continue;
            }

            if (raw && input.Contents is not null)
            {
                throw InferenceError.BadRequest($"Input '{input.Name}' sets contents while the request uses raw_input_contents; use one or the other");
            }

            // BYTES elements have no fixed size: what was sent is what they take (their count is checked when decoded).
            bytes = type == ElementType.String
                ? raw ? request.RawInputContents[rawIndex].Length : TensorCodec.ContentsBytes(input.Contents) + (4 * RequestValidator.ElementCount(input.Name, shape))
                : RequestValidator.ByteCount(input.Name, type, shape);
            if (raw)
            {
                if (type != ElementType.String)
                {
                    RequestValidator.CheckDataBytes(input.Name, type, shape, bytes, request.RawInputContents[rawIndex].Length);
                }
            }
            else
            {
                RequestValidator.CheckValueCount(input.Name, shape, RequestValidator.ElementCount(input.Name, shape), TensorCodec.ContentsCount(input.Name, type, input.Contents ?? new InferTensorContents()));
            }

            planned.Add((input.Name, type, shape, raw ? rawIndex++ : -1, null));
            total = total > long.MaxValue - bytes ? long.MaxValue : total + bytes;
        }

        lease.Admission.CheckRequestBytes(total);
        lease.Charge(total);
        var inputs = new List<NamedTensor>(planned.Count);
        for (var i = 0; i < planned.Count; i++)
        {
            var (name, type, shape, at, source) = planned[i];
            var tensor = source is not null ? HttpEndpoints.SharedMemoryTensor(name, type, shape, source, buffers, model)
                : at >= 0 ? TensorCodec.FromRawContents(name, type, shape, request.RawInputContents[at])
                : TensorCodec.FromContents(name, type, shape, request.Inputs[i].Contents ?? new InferTensorContents());
            inputs.Add(new NamedTensor(name, tensor));
        }

        return inputs;
    }

    /// <summary>The shared_memory_region / _byte_size / _offset parameters of an input or output, resolved (or null when absent).</summary>
    private static SharedMemoryRef? SharedMemoryParameters(SharedMemoryUse shm, string what, IDictionary<string, InferParameter> parameters)
    {
        string? region = null;
        if (parameters.TryGetValue("shared_memory_region", out var r))
        {
            region = r.ParameterChoiceCase == InferParameter.ParameterChoiceOneofCase.StringParam ? r.StringParam : throw InferenceError.BadRequest($"{what}: shared_memory_region must be a string");
        }

        IntegerParameter? size = parameters.TryGetValue("shared_memory_byte_size", out var b) ? RequestValidator.Parameter(b) : null;
        IntegerParameter? offset = parameters.TryGetValue("shared_memory_offset", out var o) ? RequestValidator.Parameter(o) : null;
        return shm.Resolve(what, region, size, offset);
    }

    private static ModelMetadataResponse.Types.TensorMetadata Describe(TensorSpec spec)
    {
        var m = new ModelMetadataResponse.Types.TensorMetadata { Name = spec.Name, Datatype = spec.ElementType.ProtocolName() };
        m.Shape.AddRange(ServedModel.ProtocolShape(spec));
        return m;
    }

    private static async Task<T> Guard<T>(Func<Task<T>> handler)
    {
        try
        {
            return await handler().ConfigureAwait(false);
        }
        catch (InferenceError e)
        {
            throw new RpcException(new Status(e.GrpcStatus, e.Message));
        }
        catch (Exception e) when (e is not RpcException and not OperationCanceledException)
        {
            // Not the caller's fault, and still a precise status: never UNKNOWN.
            throw new RpcException(new Status(StatusCode.Internal, $"Internal error ({e.GetType().Name}): {e.Message}"));
        }
    }
}
