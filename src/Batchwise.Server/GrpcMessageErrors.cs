using Microsoft.AspNetCore.Http;

namespace Batchwise.Server;

/// <summary>
/// A gRPC request whose message is not valid protobuf fails inside the gRPC framework, before our handlers run, and the
/// framework answers UNKNOWN ("Exception was thrown by handler"). This middleware turns that answer, just before its
/// headers go out, into INVALID_ARGUMENT with the parser's reason: bad input gets a precise status on gRPC as on HTTP.
/// </summary>
internal static class GrpcMessageErrors
{
    private const string FrameworkPrefix = "Exception was thrown by handler. ";

    /// <summary>The middleware (the gRPC service must run with detailed errors, so the parser's reason is in the status).</summary>
    public static Task Rewrite(HttpContext ctx, RequestDelegate next)
    {
        if (ctx.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true)
        {
            ctx.Response.OnStarting(() =>
            {
                RewriteUndecodable(ctx.Response.Headers);
                return Task.CompletedTask;
            });
        }

        return next(ctx);
    }

    /// <summary>UNKNOWN caused by a protobuf parse failure becomes INVALID_ARGUMENT; anything else is left alone.</summary>
    internal static void RewriteUndecodable(IHeaderDictionary headers)
    {
        if (headers["grpc-status"] != "2")
        {
            return;
        }

        var message = Uri.UnescapeDataString(headers["grpc-message"].ToString());
        var reason = message.StartsWith(FrameworkPrefix, StringComparison.Ordinal) ? message[FrameworkPrefix.Length..] : null;
        if (reason is null || !reason.StartsWith("InvalidProtocolBufferException", StringComparison.Ordinal))
        {
            return;
        }

        var detail = reason["InvalidProtocolBufferException".Length..].TrimStart(':', ' ');
        headers["grpc-status"] = "3";
        headers["grpc-message"] = Uri.EscapeDataString($"The request message is not valid protobuf for this method: {detail}");
    }
}
