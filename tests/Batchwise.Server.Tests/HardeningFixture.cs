using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Server.Tests;

/// <summary>
/// A real server (127.0.0.1, ports picked by the OS) with the models hostile input needs: "dyn" (FP32 [batch, n], a
/// dynamic non-batch dimension, so a request can claim any size), "i16" (INT16 [batch, 4]) and zoo:mlp; small limits so
/// budgets are cheap to hit.
/// </summary>
public sealed class HardeningFixture : IAsyncLifetime
{
    public const long MaxBody = 1 << 20;

    public const long MaxRequestBytes = 4 << 20;

    public const long MaxQueueBytes = 64 << 20;

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("bw-hardening-");

    public InferenceServer Server { get; private set; } = null!;

    public HttpClient Http { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var models = new ModelRepository();
        var batching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 100, PriorityLevels = 2 };
        models.Add("dyn", Save(DynamicModel()), new ModelConfig { MaxBatchSize = 8, DynamicBatching = batching });
        models.Add("i16", Save(Int16Model()), new ModelConfig { MaxBatchSize = 8, DynamicBatching = batching });
        models.Add("mlp", "zoo:mlp", new ModelConfig { MaxBatchSize = 8, DynamicBatching = batching });
        Server = await InferenceServer.StartAsync(models, new ServerOptions
        {
            HttpPort = 0,
            GrpcPort = 0,
            MetricsPort = 0,
            MaxBodySize = MaxBody,
            MaxRequestBytes = MaxRequestBytes,
            MaxQueueBytes = MaxQueueBytes,
        });
        Http = new HttpClient { BaseAddress = Server.HttpAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        _dir.Delete(recursive: true);
    }

    /// <summary>y = Relu(x), x FP32 [batch, n].</summary>
    public static OnnxModel DynamicModel()
    {
        var g = new GraphBuilder("dyn");
        var x = g.Input("x", ElementType.Float, "batch", "n");
        g.Output(g.Rename(g.Node("Relu", [x]), "y"), ElementType.Float, "batch", "n");
        return g.Build("dyn");
    }

    /// <summary>k_out = Identity(k), k INT16 [batch, 4].</summary>
    public static OnnxModel Int16Model()
    {
        var g = new GraphBuilder("i16");
        var k = g.Input("k", ElementType.Int16, "batch", 4L);
        g.Output(g.Rename(g.Node("Identity", [k]), "k_out"), ElementType.Int16, "batch", 4L);
        return g.Build("i16");
    }

    private string Save(OnnxModel model)
    {
        var path = Path.Combine(_dir.FullName, model.Name + ".onnx");
        model.Save(path);
        return path;
    }
}
