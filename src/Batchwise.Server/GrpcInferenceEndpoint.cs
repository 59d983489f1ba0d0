using Batchwise.Onnx;
using Batchwise.Server.Protocol;
using Google.Protobuf;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>The Open Inference Protocol's gRPC service (inference.GRPCInferenceService).</summary>
internal sealed class GrpcInferenceEndpoint(ModelRepository models) : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = models.IsReady });

    // Triton answers ready: false for a model (or version) it does not serve, not NOT_FOUND.
    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ModelReadyResponse { Ready = models.IsModelReady(request.Name, request.Version) });

    public override Task<ModelConfigResponse> ModelConfig(ModelConfigRequest request, ServerCallContext context) =>
        Guard(() => Task.FromResult(new ModelConfigResponse { Config = TritonModelConfig.Describe(models.Find(request.Name, request.Version)) }));

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
        var raw = request.RawInputContents.Count > 0;
        if (raw && request.RawInputContents.Count != request.Inputs.Count)
        {
            throw InferenceError.BadRequest($"raw_input_contents has {request.RawInputContents.Count} entries for {request.Inputs.Count} inputs; give one per input");
        }

        var inputs = new List<NamedTensor>(request.Inputs.Count);
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

            var tensor = raw
                ? TensorCodec.FromBytes(input.Name, type, shape, request.RawInputContents[i].Span)
                : TensorCodec.FromContents(input.Name, type, shape, input.Contents ?? new InferTensorContents());
            inputs.Add(new NamedTensor(input.Name, tensor));
        }

        var priority = 0;
        TimeSpan? timeout = null;
        if (request.Parameters.TryGetValue("priority", out var p))
        {
            priority = p.ParameterChoiceCase switch
            {
                InferParameter.ParameterChoiceOneofCase.Int64Param => (int)p.Int64Param,
                InferParameter.ParameterChoiceOneofCase.Uint64Param => (int)p.Uint64Param,
                _ => throw InferenceError.BadRequest("Parameter 'priority' must be an integer"),
            };
        }

        if (request.Parameters.TryGetValue("timeout", out var t))
        {
            var us = t.ParameterChoiceCase switch
            {
                InferParameter.ParameterChoiceOneofCase.Int64Param => t.Int64Param,
                InferParameter.ParameterChoiceOneofCase.Uint64Param => (long)t.Uint64Param,
                _ => throw InferenceError.BadRequest("Parameter 'timeout' must be an integer (microseconds)"),
            };
            timeout = us > 0 ? TimeSpan.FromMicroseconds(us) : null;
        }

        foreach (var o in request.Outputs)
        {
            if (o.Parameters.ContainsKey("classification"))
            {
                throw InferenceError.BadRequest($"Output '{o.Name}': the classification extension is not supported yet; request the raw output");
            }
        }

        var indices = request.Outputs.Count > 0
            ? request.Outputs.Select(o => model.OutputIndex(o.Name)).ToList()
            : Enumerable.Range(0, model.Outputs.Count).ToList();
        var outputs = await model.InferAsync(inputs, priority, timeout, context.CancellationToken).ConfigureAwait(false);
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
    }
}
