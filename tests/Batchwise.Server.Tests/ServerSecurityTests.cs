using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Batchwise.Server.Protocol;
using Grpc.Core;
using Grpc.Net.Client;

namespace Batchwise.Server.Tests;

/// <summary>TLS and mutual TLS on both ports, and the bearer token; certificates are made by the test, signed by its own CA.</summary>
public sealed class ServerSecurityTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("bw-tls-");
    private readonly X509Certificate2 _ca;
    private readonly string _caPem;

    public ServerSecurityTests()
    {
        (_ca, _caPem) = MakeCa("Batchwise test CA");
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _ca.Dispose();
        _dir.Delete(recursive: true);
    }

    [Fact]
    public async Task Tls_serves_https_and_grpc_over_tls_and_refuses_plain_text()
    {
        var (cert, key) = WriteLeaf(_ca, "server", server: true);
        await using var server = await StartAsync(new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, TlsCertificatePath = cert, TlsKeyPath = key });
        Assert.Equal("https", server.HttpAddress.Scheme);
        using var http = new HttpClient(Handler(null)) { BaseAddress = server.HttpAddress };
        using var response = await http.GetAsync(new Uri("/v2/models/mlp", UriKind.Relative), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        using var channel = GrpcChannel.ForAddress(server.GrpcAddress, new GrpcChannelOptions { HttpHandler = Handler(null) });
        var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        Assert.Equal("mlp", (await grpc.ModelMetadataAsync(new ModelMetadataRequest { Name = "mlp" }, cancellationToken: Ct)).Name);

        using var plain = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.HttpAddress.Port}") };
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetAsync(new Uri("/v2", UriKind.Relative), Ct));
    }

    [Fact]
    public async Task Mutual_tls_accepts_only_clients_with_a_certificate_the_ca_signed()
    {
        var (cert, key) = WriteLeaf(_ca, "server", server: true);
        var caPath = Path.Combine(_dir.FullName, "ca.pem");
        File.WriteAllText(caPath, _caPem);
        await using var server = await StartAsync(new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, TlsCertificatePath = cert, TlsKeyPath = key, TlsClientCaPath = caPath });

        using var good = LoadClient(_ca, "client");
        using (var http = new HttpClient(Handler(good)) { BaseAddress = server.HttpAddress })
        {
            using var response = await http.GetAsync(new Uri("/v2", UriKind.Relative), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var channel = GrpcChannel.ForAddress(server.GrpcAddress, new GrpcChannelOptions { HttpHandler = Handler(good) }))
        {
            var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
            Assert.True((await grpc.ServerLiveAsync(new ServerLiveRequest(), cancellationToken: Ct)).Live);
        }

        using (var anonymous = new HttpClient(Handler(null)) { BaseAddress = server.HttpAddress })
        {
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => anonymous.GetAsync(new Uri("/v2", UriKind.Relative), Ct));
        }

        var (otherCa, _) = MakeCa("Some other CA");
        using (otherCa)
        using (var stranger = LoadClient(otherCa, "stranger"))
        using (var http = new HttpClient(Handler(stranger)) { BaseAddress = server.HttpAddress })
        {
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => http.GetAsync(new Uri("/v2", UriKind.Relative), Ct));
        }
    }

    [Fact]
    public async Task A_bearer_token_guards_every_call_but_health_and_unauthenticated_errors_name_no_model()
    {
        var tokenFile = Path.Combine(_dir.FullName, "token");
        File.WriteAllText(tokenFile, "s3cret-token\n");
        await using var server = await StartAsync(new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, AuthTokenFile = tokenFile });
        using var http = new HttpClient { BaseAddress = server.HttpAddress };
        foreach (var path in new[] { "/v2/health/live", "/v2/health/ready" })
        {
            using var open = await http.GetAsync(new Uri(path, UriKind.Relative), Ct);
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }

        foreach (var path in new[] { "/v2", "/v2/models/mlp", "/v2/models/nope", "/v2/models/mlp/config", "/metrics" })
        {
            using var refused = await http.GetAsync(new Uri(path, UriKind.Relative), Ct);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("error").GetString()!;
            Assert.Contains("bearer token", error, StringComparison.Ordinal);
            Assert.DoesNotContain("mlp", error, StringComparison.Ordinal);
        }

        using (var wrong = new HttpRequestMessage(HttpMethod.Get, new Uri("/v2/models/mlp", UriKind.Relative)))
        {
            wrong.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "s3cret-tokeN");
            using var refused = await http.SendAsync(wrong, Ct);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        // The metrics port is guarded the same way.
        using var scraper = new HttpClient { BaseAddress = server.MetricsAddress };
        using (var refused = await scraper.GetAsync(new Uri("/metrics", UriKind.Relative), Ct))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        scraper.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "s3cret-token");
        using (var scraped = await scraper.GetAsync(new Uri("/metrics", UriKind.Relative), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, scraped.StatusCode);
        }

        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "s3cret-token");
        using (var ok = await http.GetAsync(new Uri("/v2/models/mlp", UriKind.Relative), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using (var missing = await http.GetAsync(new Uri("/v2/models/nope", UriKind.Relative), Ct))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            Assert.DoesNotContain("mlp", await missing.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        }

        using var channel = GrpcChannel.ForAddress(server.GrpcAddress);
        var grpc = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        Assert.True((await grpc.ServerLiveAsync(new ServerLiveRequest(), cancellationToken: Ct)).Live);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await grpc.ModelMetadataAsync(new ModelMetadataRequest { Name = "mlp" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Contains("bearer token", e.Status.Detail, StringComparison.Ordinal);
        var headers = new Metadata { { "authorization", "Bearer s3cret-token" } };
        Assert.Equal("mlp", (await grpc.ModelMetadataAsync(new ModelMetadataRequest { Name = "mlp" }, headers, cancellationToken: Ct)).Name);
    }

    [Theory]
    [InlineData("cert-only", "--tls-cert was given without --tls-key")]
    [InlineData("ca-only", "--tls-client-ca needs TLS")]
    [InlineData("bad-cert", "Cannot load the TLS certificate")]
    [InlineData("empty-token", "is empty")]
    [InlineData("missing-token", "Cannot read the token file")]
    public async Task Bad_security_settings_fail_at_start_with_one_line(string setting, string message)
    {
        var junk = Path.Combine(_dir.FullName, "junk.pem");
        File.WriteAllText(junk, "not a certificate");
        var empty = Path.Combine(_dir.FullName, "empty");
        File.WriteAllText(empty, "  \n");
        var options = setting switch
        {
            "cert-only" => new ServerOptions { TlsCertificatePath = junk },
            "ca-only" => new ServerOptions { TlsClientCaPath = junk },
            "bad-cert" => new ServerOptions { TlsCertificatePath = junk, TlsKeyPath = junk },
            "empty-token" => new ServerOptions { AuthTokenFile = empty },
            _ => new ServerOptions { AuthTokenFile = Path.Combine(_dir.FullName, "nope") },
        };
        var models = new ModelRepository();
        await using var _ = models;
        var e = await Assert.ThrowsAsync<BatchwiseException>(() => InferenceServer.StartAsync(models, options with { HttpPort = 0, GrpcPort = 0 }, Ct));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    private static async Task<InferenceServer> StartAsync(ServerOptions options)
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 4 });
        return await InferenceServer.StartAsync(models, options, Ct);
    }

    /// <summary>A handler that trusts only the test CA (and presents <paramref name="client"/> when given).</summary>
    private SocketsHttpHandler Handler(X509Certificate2? client)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(_ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return certificate is X509Certificate2 c && chain.Build(c);
        };
        if (client is not null)
        {
            handler.SslOptions.ClientCertificates = [client];
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => client;
        }

        return handler;
    }

    private static (X509Certificate2 Ca, string Pem) MakeCa(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return (ca, ca.ExportCertificatePem());
    }

    /// <summary>Writes a certificate signed by <paramref name="ca"/> and its key as PEM files; returns their paths.</summary>
    private (string Cert, string Key) WriteLeaf(X509Certificate2 ca, string name, bool server)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var cert = Sign(ca, key, name, server);
        var certPath = Path.Combine(_dir.FullName, name + ".crt");
        var keyPath = Path.Combine(_dir.FullName, name + ".key");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }

    private static X509Certificate2 LoadClient(X509Certificate2 ca, string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var cert = Sign(ca, key, name, server: false);

        // Through PKCS#12 so the private key is usable by the TLS stack on every platform.
        using var withKey = cert.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    private static X509Certificate2 Sign(X509Certificate2 ca, ECDsa key, string name, bool server)
    {
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        if (server)
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddIpAddress(IPAddress.Loopback);
            san.AddDnsName("localhost");
            request.CertificateExtensions.Add(san.Build());
        }

        var serial = RandomNumberGenerator.GetBytes(8);
        return request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(12), serial);
    }
}
