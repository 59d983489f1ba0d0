using System.Reflection;
using Batchwise.Server.Protocol;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;

namespace Batchwise.Server;

/// <summary>
/// Binds inference.GRPCInferenceService's methods to <see cref="GrpcInferenceEndpoint"/>'s methods of the same names, as
/// Grpc.AspNetCore's generated binding does, but with ModelInfer's and ModelStreamInfer's requests read by
/// <see cref="GrpcInferRequestReader"/> (the generated binding has no way to change a method's marshaller).
/// A method of the service that the endpoint does not define is left unbound: the framework answers UNIMPLEMENTED.
/// </summary>
internal sealed class GrpcInferenceMethods : IServiceMethodProvider<GrpcInferenceEndpoint>
{
    /// <inheritdoc/>
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<GrpcInferenceEndpoint> context) =>
        GRPCInferenceService.BindService(new Binder(context), null!);

    /// <summary>The method with the request marshaller this server reads ModelInferRequest with.</summary>
    internal static Method<TRequest, TResponse> WithReader<TRequest, TResponse>(Method<TRequest, TResponse> method)
        where TRequest : class
        where TResponse : class =>
        typeof(TRequest) == typeof(ModelInferRequest)
            ? new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, (Marshaller<TRequest>)(object)GrpcInferRequestReader.Marshaller, method.ResponseMarshaller)
            : method;

    private sealed class Binder(ServiceMethodProviderContext<GrpcInferenceEndpoint> context) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, Grpc.Core.UnaryServerMethod<TRequest, TResponse>? handler)
        {
            if (Handler<Grpc.AspNetCore.Server.Model.UnaryServerMethod<GrpcInferenceEndpoint, TRequest, TResponse>>(method.Name) is { } invoker)
            {
                context.AddUnaryMethod(WithReader(method), [], invoker);
            }
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, Grpc.Core.ClientStreamingServerMethod<TRequest, TResponse>? handler)
        {
            if (Handler<Grpc.AspNetCore.Server.Model.ClientStreamingServerMethod<GrpcInferenceEndpoint, TRequest, TResponse>>(method.Name) is { } invoker)
            {
                context.AddClientStreamingMethod(WithReader(method), [], invoker);
            }
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, Grpc.Core.ServerStreamingServerMethod<TRequest, TResponse>? handler)
        {
            if (Handler<Grpc.AspNetCore.Server.Model.ServerStreamingServerMethod<GrpcInferenceEndpoint, TRequest, TResponse>>(method.Name) is { } invoker)
            {
                context.AddServerStreamingMethod(WithReader(method), [], invoker);
            }
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, Grpc.Core.DuplexStreamingServerMethod<TRequest, TResponse>? handler)
        {
            if (Handler<Grpc.AspNetCore.Server.Model.DuplexStreamingServerMethod<GrpcInferenceEndpoint, TRequest, TResponse>>(method.Name) is { } invoker)
            {
                context.AddDuplexStreamingMethod(WithReader(method), [], invoker);
            }
        }

        /// <summary>An open-instance delegate to the endpoint's public method <paramref name="name"/>, or null when it has none of that shape.</summary>
        private static TDelegate? Handler<TDelegate>(string name)
            where TDelegate : Delegate
        {
            var parameters = typeof(TDelegate).GetMethod("Invoke")!.GetParameters().Skip(1).Select(p => p.ParameterType).ToArray();
            var target = typeof(GrpcInferenceEndpoint).GetMethod(name, BindingFlags.Public | BindingFlags.Instance, parameters);
            return target is null ? null : (TDelegate)Delegate.CreateDelegate(typeof(TDelegate), target);
        }
    }
}
