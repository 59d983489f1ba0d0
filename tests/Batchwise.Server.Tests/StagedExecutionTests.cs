using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Server.Tests;

/// <summary>
/// An engine that stages its own buffers (as the cuda engine does with page-locked memory): ONNX Runtime behind
/// <see cref="IStagedExecution"/>, counting staged runs and direct runs apart.
/// </summary>
internal sealed class StagedOrtEngine : IEngine
{
    private int _staged;
    private int _direct;

    public string Name => "staged-ort";

    public int Staged => Volatile.Read(ref _staged);

    public int Direct => Volatile.Read(ref _direct);

    public EngineDescription Describe(EngineOptions options) => new(Name, "test", "none", new Dictionary<string, string>());

    public IEngineSession Load(OnnxModel model, EngineOptions options) => new Session(this, new OrtEngine().Load(model, options));

    private sealed class Session(StagedOrtEngine engine, IEngineSession inner) : IEngineSession, IStagedExecution
    {
        public IReadOnlyList<TensorSpec> Inputs => inner.Inputs;

        public IReadOnlyList<TensorSpec> Outputs => inner.Outputs;

        public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref engine._direct);
            return inner.Run(inputs, cancellationToken);
        }

        public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) => inner.Prepare(inputs);

        public IStagedRun Stage(IReadOnlyList<long[]> inputShapes)
        {
            Interlocked.Increment(ref engine._staged);
            return new ManagedStagedRun(inner, inputShapes);
        }

        public void Dispose() => inner.Dispose();
    }
}

public sealed class StagedExecutionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_served_model_on_an_engine_that_stages_runs_every_request_through_its_staged_buffers()
    {
        var engine = new StagedOrtEngine();
        var name = "staged-" + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        await using var model = ServedModel.Load("transport", Zoo.ModelZoo.Build("zoo:transport?size=16"), new ModelConfig { MaxBatchSize = 4, Engine = name }, new ServerMetrics());
        var direct = engine.Direct; // the warm-up run
        var staged = engine.Staged;
        for (var id = 1; id <= 6; id++)
        {
            var values = new float[3 * 16 * 16];
            for (var c = 0; c < 3; c++)
            {
                values.AsSpan(c * 256, 256).Fill(id + (c / 4f));
            }

            var outputs = await model.InferAsync([new NamedTensor("input", Tensor.From<float>(ElementType.Float, [1, 3, 16, 16], values))], 0, TimeSpan.FromSeconds(30), Ct);
            Assert.Equal([1L, 3L], outputs[0].Shape);
            Assert.Equal([id, id + 0.25f, id + 0.5f], outputs[0].AsSpan<float>().ToArray());
        }

        Assert.Equal(direct, engine.Direct);
        Assert.Equal(staged + 6, engine.Staged);
    }
}
