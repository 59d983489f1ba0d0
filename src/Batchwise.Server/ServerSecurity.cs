using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Batchwise.Server;

/// <summary>TLS (optionally mutual) for both ports, and the optional bearer token every call but health needs.</summary>
internal static class ServerSecurity
{
    /// <summary>Paths that answer without a token: liveness and readiness, as probes call them.</summary>
    private static readonly HashSet<string> OpenPaths = new(StringComparer.Ordinal)
    {
        "/v2/health/live",
        "/v2/health/ready",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    };

    /// <summary>Kestrel's TLS settings from the PEM files, or null when no certificate is given.</summary>
    public static HttpsConnectionAdapterOptions? LoadTls(ServerOptions options)
    {
        if (options.TlsCertificatePath is null && options.TlsKeyPath is null)
        {
            if (options.TlsClientCaPath is not null)
            {
                throw new BatchwiseException("--tls-client-ca needs TLS", "Give --tls-cert and --tls-key too.");
            }

            return null;
        }

        if (options.TlsCertificatePath is null || options.TlsKeyPath is null)
        {
            throw new BatchwiseException(options.TlsCertificatePath is null ? "--tls-key was given without --tls-cert" : "--tls-cert was given without --tls-key", "Give both: the PEM certificate (chain) and its PEM private key.");
        }

        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(options.TlsCertificatePath, options.TlsKeyPath);
        }
        catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException or ArgumentException)
        {
            throw new BatchwiseException($"Cannot load the TLS certificate '{options.TlsCertificatePath}' with key '{options.TlsKeyPath}': {e.Message}", "Give a PEM certificate and its unencrypted PEM private key (e.g. from openssl req -x509 -nodes).", e);
        }

        var tls = new HttpsConnectionAdapterOptions { ServerCertificate = certificate, ClientCertificateMode = ClientCertificateMode.NoCertificate };
        if (options.TlsClientCaPath is { } caPath)
        {
            var authorities = new X509Certificate2Collection();
            try
            {
                authorities.ImportFromPemFile(caPath);
            }
            catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException)
            {
                throw new BatchwiseException($"Cannot load the client CA '{caPath}': {e.Message}", "Give the PEM certificate of the authority that signs your clients' certificates.", e);
            }

            if (authorities.Count == 0)
            {
                throw new BatchwiseException($"The client CA '{caPath}' holds no certificate", "Give the PEM certificate of the authority that signs your clients' certificates.");
            }

            tls.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            tls.ClientCertificateValidation = (client, _, _) => IsSignedBy(client, authorities);
        }

        return tls;
    }

    /// <summary>The token from <paramref name="path"/> (surrounding whitespace removed), or null when no file is given.</summary>
    public static byte[]? LoadToken(string? path)
    {
        if (path is null)
        {
            return null;
        }

        string text;
        try
        {
            text = File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot read the token file '{path}': {e.Message}", "Give a readable file holding the bearer token on one line.", e);
        }

        if (text.Length == 0 || text.Any(char.IsWhiteSpace))
        {
            throw new BatchwiseException($"The token file '{path}' is {(text.Length == 0 ? "empty" : "not one token (it holds whitespace)")}", "Write one token (e.g. openssl rand -hex 32) on one line.");
        }

        return SHA256.HashData(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>
    /// Middleware that answers 401 (HTTP, {"error": ...}) or UNAUTHENTICATED (gRPC) unless the request carries
    /// "Authorization: Bearer TOKEN"; it runs before routing, so an unauthenticated caller learns nothing about the models.
    /// </summary>
    public static Func<HttpContext, RequestDelegate, Task> RequireToken(byte[] tokenHash) => (ctx, next) =>
    {
        if (OpenPaths.Contains(ctx.Request.Path.Value ?? string.Empty) || HasToken(ctx, tokenHash))
        {
            return next(ctx);
        }

        const string Message = "Missing or wrong bearer token; send the header 'Authorization: Bearer TOKEN' with the token in the server's --auth-token-file";
        if (ctx.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true)
        {
            // A trailers-only gRPC response: status 16 (UNAUTHENTICATED) in the headers, no message.
            ctx.Response.StatusCode = 200;
            ctx.Response.ContentType = "application/grpc";
            ctx.Response.Headers["grpc-status"] = "16";
            ctx.Response.Headers["grpc-message"] = Uri.EscapeDataString(Message);
            return Task.CompletedTask;
        }

        ctx.Response.Headers.WWWAuthenticate = "Bearer";
        return HttpEndpoints.WriteErrorAsync(ctx, 401, Message);
    };

    private static bool HasToken(HttpContext ctx, byte[] tokenHash)
    {
        var header = ctx.Request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        // Compare hashes in constant time: neither the token's bytes nor its length leak through timing.
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(header[Scheme.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(given, tokenHash);
    }

    private static bool IsSignedBy(X509Certificate2? client, X509Certificate2Collection authorities)
    {
        if (client is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.NoFlag;
        return chain.Build(client);
    }
}
