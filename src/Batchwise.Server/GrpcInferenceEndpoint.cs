using Batchwise.Onnx;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>The Open Inference Protocol's gRPC service (inference.GRPCInferenceService).</summary>
internal sealed class GrpcInferenceEndpoint(ModelRepository models, RequestAdmission admission) : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = models.IsReady });

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context) =>
        Guard(() => Task.FromResult(new ModelReadyResponse { Ready = models.Find(request.Name, request.Version).IsReady }));

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context)
    {
        var response = new ServerMetadataResponse { Name = InferenceServer.Name, Version = InferenceServer.Version };
        response.Extensions.AddRange(InferenceServer.Extensions);
        return Task.FromResult(response);
    }

    public override Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context) => Guard(() =>
    {
        var model = models.Find(request.Name, request.Version);
        var response = new ModelMetadataResponse { Name = model.Name, Platform = model.Platform };
        response.Versions.Add(model.Version);
        response.Inputs.AddRange(model.Inputs.Select(Describe));
        response.Outputs.AddRange(model.Outputs.Select(Describe));
        return Task.FromResult(response);
    });

    public override Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context) => Guard(async () =>
    {
        var model = models.Find(request.ModelName, request.ModelVersion);
        using var lease = admission.Admit();

        // The message is already parsed in memory: charge what it holds before decoding anything from it.
        lease.Charge(request.RawInputContents.Sum(r => (long)r.Length) + request.Inputs.Sum(i => TensorCodec.ContentsBytes(i.Contents)));
        var priority = request.Parameters.TryGetValue("priority", out var p) ? RequestValidator.Priority(RequestValidator.Parameter(p)) : 0;
        var timeout = request.Parameters.TryGetValue("timeout", out var t) ? RequestValidator.Timeout(RequestValidator.Parameter(t)) : null;
        var indices = request.Outputs.Count > 0
            ? request.Outputs.Select(o => model.OutputIndex(o.Name)).ToList()
            : Enumerable.Range(0, model.Outputs.Count).ToList();
        var parsed = Decode(request, model, lease);
        var outputs = await model.InferAsync(parsed, priority, timeout, context.CancellationToken).ConfigureAwait(false);
        var response = new ModelInferResponse { ModelName = model.Name, ModelVersion = model.Version, Id = request.Id };
        foreach (var i in indices)
        {
            var tensor = outputs[i];
            var output = new ModelInferResponse.Types.InferOutputTensor { Name = model.Outputs[i].Name, Datatype = tensor.ElementType.ProtocolName() };
            output.Shape.AddRange(tensor.Shape);
            response.Outputs.Add(output);
            response.RawOutputContents.Add(UnsafeByteOperations.UnsafeWrap(tensor.Data));
        }

        return response;
    });

    /// <summary>
    /// Decodes the inputs with the same rules as HTTP: shapes against the model, sizes with overflow checks, data
    /// present against the size claimed, the total against --max-request-bytes and charged, and only then allocated.
    /// </summary>
    internal static List<NamedTensor> Decode(ModelInferRequest request, ServedModel model, RequestAdmission.Lease lease)
    {
        var raw = request.RawInputContents.Count > 0;
        if (raw && request.RawInputContents.Count != request.Inputs.Count)
        {
            throw InferenceError.BadRequest($"raw_input_contents has {request.RawInputContents.Count} entries for {request.Inputs.Count} inputs; give one per input");
        }

        var planned = new List<(string Name, ElementType Type, long[] Shape)>(request.Inputs.Count);
        long total = 0;
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            var type = TensorCodec.ParseDatatype(input.Name, input.Datatype);
            var shape = input.Shape.ToArray();
            model.CheckInput(input.Name, type, shape);
            if (raw && input.Contents is not null)
            {
                throw InferenceError.BadRequest($"Input '{input.Name}' sets contents while the request uses raw_input_contents; use one or the other");
            }

            var bytes = RequestValidator.ByteCount(input.Name, type, shape);
            if (raw)
            {
                RequestValidator.CheckDataBytes(input.Name, type, shape, bytes, request.RawInputContents[i].Length);
            }
            else
            {
                RequestValidator.CheckValueCount(input.Name, shape, RequestValidator.ElementCount(input.Name, shape), TensorCodec.ContentsCount(input.Name, type, input.Contents ?? new InferTensorContents()));
            }

            planned.Add((input.Name, type, shape));
            total = total > long.MaxValue - bytes ? long.MaxValue : total + bytes;
        }

        lease.Admission.CheckRequestBytes(total);
        lease.Charge(total);
        var inputs = new List<NamedTensor>(planned.Count);
        for (var i = 0; i < planned.Count; i++)
        {
            var (name, type, shape) = planned[i];
            var tensor = raw
                ? TensorCodec.FromBytes(name, type, shape, request.RawInputContents[i].Span)
                : TensorCodec.FromContents(name, type, shape, request.Inputs[i].Contents ?? new InferTensorContents());
            inputs.Add(new NamedTensor(name, tensor));
        }

        return inputs;
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
