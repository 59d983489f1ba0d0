using Grpc.Core;

namespace Batchwise.Server;

/// <summary>A request the server refuses, with the HTTP status and gRPC code the protocol gives it.</summary>
public sealed class InferenceError : Exception
{
    /// <summary>Creates a refusal.</summary>
    public InferenceError(int httpStatus, StatusCode grpcStatus, string message, Exception? inner = null)
        : base(message, inner)
    {
        HttpStatus = httpStatus;
        GrpcStatus = grpcStatus;
    }

    /// <summary>HTTP status code.</summary>
    public int HttpStatus { get; }

    /// <summary>gRPC status code.</summary>
    public StatusCode GrpcStatus { get; }

    /// <summary>Seconds a client should wait before retrying (503 only).</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>400 / INVALID_ARGUMENT.</summary>
    public static InferenceError BadRequest(string message) => new(400, StatusCode.InvalidArgument, message);

    /// <summary>404 / NOT_FOUND.</summary>
    public static InferenceError NotFound(string message) => new(404, StatusCode.NotFound, message);
}
