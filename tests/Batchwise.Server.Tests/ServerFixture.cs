using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Server.Tests;

/// <summary>A real server on 127.0.0.1 (ports picked by the OS) serving zoo:mlp on ONNX Runtime, shared by a test class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    /// <summary>Body limit small enough to test 413 cheaply.</summary>
    public const long MaxBody = 64 * 1024;

    public InferenceServer Server { get; private set; } = null!;

    public HttpClient Http { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 200 } });
        Server = await InferenceServer.StartAsync(models, new ServerOptions { HttpPort = 0, GrpcPort = 0, MetricsPort = 0, MaxBodySize = MaxBody });
        Http = new HttpClient { BaseAddress = Server.HttpAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }

    /// <summary>What ONNX Runtime gives for the same input, run directly.</summary>
    public static float[] Expected(float[] input, int rows)
    {
        using var session = new OrtEngine().Load(Zoo.ModelZoo.Build("zoo:mlp"), new EngineOptions());
        return session.Run([Tensor.From<float>(ElementType.Float, [rows, 64], input)])[0].AsSpan<float>().ToArray();
    }

    /// <summary>Seeded input rows for zoo:mlp.</summary>
    public static float[] Input(int rows, int seed = 1)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, rows * 64).Select(_ => (float)rng.NextDouble()).ToArray();
    }
}
