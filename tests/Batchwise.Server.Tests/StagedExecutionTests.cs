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

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Concurrent_requests_merged_into_one_batch_each_get_their_own_rows_back(bool stagingEngine)
    {
        // Four requests (2+1+2+1 rows) wait for the preferred batch of 6 rows (the delay is far longer than the test): one execution, with
        // every request's bytes copied into the staging buffers (staging engine) or a pooled merged array (ort).
        var engine = new StagedOrtEngine();
        var name = "staged-" + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        var config = new ModelConfig
        {
            MaxBatchSize = 8,
            Engine = stagingEngine ? name : "ort",
            DynamicBatching = new DynamicBatchingConfig { PreferredBatchSize = [6], MaxQueueDelayMicroseconds = 60_000_000 },
        };
        await using var model = ServedModel.Load("transport", Zoo.ModelZoo.Build("zoo:transport?size=16"), config, new ServerMetrics());
        var staged = engine.Staged;
        for (var round = 0; round < 2; round++)
        {
            var requests = Enumerable.Range(1, 4).Select(id =>
            {
                var rows = 1 + (id % 2);
                var values = new float[rows * 3 * 16 * 16];
                for (var r = 0; r < rows; r++)
                {
                    for (var c = 0; c < 3; c++)
                    {
                        values.AsSpan(((r * 3) + c) * 256, 256).Fill((round * 100) + (id * 10) + r + (c / 4f));
                    }
                }

                return (id, rows, task: model.InferAsync([new NamedTensor("input", Tensor.From<float>(ElementType.Float, [rows, 3, 16, 16], values))], 0, TimeSpan.FromSeconds(30), Ct));
            }).ToList();
            foreach (var (id, rows, task) in requests)
            {
                var outputs = await task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
                Assert.Equal([rows, 3L], outputs[0].Shape);
                var expected = Enumerable.Range(0, rows).SelectMany(r => new[] { 0f, 0.25f, 0.5f }.Select(c => (round * 100) + (id * 10) + r + c)).ToArray();
                Assert.Equal(expected, outputs[0].AsSpan<float>().ToArray());
            }
        }

        Assert.Equal(2, model.Statistics.Snapshot().ExecutionCount);
        Assert.Equal(stagingEngine ? staged + 2 : staged, engine.Staged);
    }
}
