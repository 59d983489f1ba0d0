using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Server.Tests;

/// <summary>pipeline_depth: batches in flight on one instance's session at once, and what the metrics count of them.</summary>
public sealed class PipelineDepthTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task With_pipeline_depth_2_one_instance_runs_two_staged_batches_at_once_never_three_and_answers_each_request_with_its_own_rows()
    {
        var engine = new PairingEngine();
        var name = "pairing-" + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        var config = new ModelConfig
        {
            MaxBatchSize = 2,
            Engine = name,
            PipelineDepth = 2,
            DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 0 },
        };
        await using var model = ServedModel.Load("transport", Zoo.ModelZoo.Build("zoo:transport?size=16"), config, new ServerMetrics());
        Assert.Equal(2, engine.LoadedDepth);
        var requests = Enumerable.Range(1, 24).Select(id =>
        {
            var values = new float[3 * 16 * 16];
            for (var c = 0; c < 3; c++)
            {
                values.AsSpan(c * 256, 256).Fill(id + (c / 4f));
            }

            return (id, task: model.InferAsync([new NamedTensor("input", Tensor.From<float>(ElementType.Float, [1, 3, 16, 16], values))], 0, TimeSpan.FromSeconds(30), Ct));
        }).ToList();
        foreach (var (id, task) in requests)
        {
            var outputs = await task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
            Assert.Equal([id, id + 0.25f, id + 0.5f], outputs[0].AsSpan<float>().ToArray());
        }

        Assert.Equal(2, engine.MostInFlight);
    }

    [Theory]
    [InlineData(100, 0, 200, 100)] // nothing ran before: from staging
    [InlineData(150, 200, 300, 200)] // queued behind a batch that completed at 200: from then
    [InlineData(350, 200, 400, 350)] // staged after the last completion: from staging
    [InlineData(300, 500, 450, 300)] // a later completion (a run on another stream) is not its predecessor
    public void A_staged_batch_counts_its_compute_from_staging_or_its_predecessors_completion(long staged, long latest, long done, long expected)
    {
        var latestDone = latest;
        Assert.Equal(expected, ServedModel.OwnStart(ref latestDone, staged, done));
        Assert.Equal(Math.Max(latest, done), latestDone);
    }

    /// <summary>ONNX Runtime behind staged runs whose first run waits for a second to be staged on the same session.</summary>
    private sealed class PairingEngine : IEngine
    {
        private readonly TaskCompletionSource _paired = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _inFlight;
        private int _most;

        public string Name => "pairing";

        public int LoadedDepth { get; private set; }

        public int MostInFlight => Volatile.Read(ref _most);

        public EngineDescription Describe(EngineOptions options) => new(Name, "test", "none", new Dictionary<string, string>());

        public IEngineSession Load(OnnxModel model, EngineOptions options)
        {
            LoadedDepth = options.PipelineDepth;
            return new Session(this, new OrtEngine().Load(model, options with { PipelineDepth = 1 }));
        }

        private void Enter()
        {
            var now = Interlocked.Increment(ref _inFlight);
            int most;
            while (now > (most = Volatile.Read(ref _most)) && Interlocked.CompareExchange(ref _most, now, most) != most)
            {
            }

            if (now >= 2)
            {
                _paired.TrySetResult();
            }
        }

        private sealed class Session(PairingEngine engine, IEngineSession inner) : IEngineSession, IStagedExecution
        {
            public IReadOnlyList<TensorSpec> Inputs => inner.Inputs;

            public IReadOnlyList<TensorSpec> Outputs => inner.Outputs;

            public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default) => inner.Run(inputs, cancellationToken);

            public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) => inner.Prepare(inputs);

            public IStagedRun Stage(IReadOnlyList<long[]> inputShapes)
            {
                engine.Enter();
                return new Run(engine, new ManagedStagedRun(inner, inputShapes));
            }

            public void Dispose() => inner.Dispose();
        }

        /// <summary>A staged run that completes only once two runs have been staged at once (the pipeline filled).</summary>
        private sealed class Run(PairingEngine engine, ManagedStagedRun inner) : IStagedRun
        {
            public IReadOnlyList<long[]>? OutputShapes => inner.OutputShapes;

            public Memory<byte> Input(int index) => inner.Input(index);

            public async Task RunAsync(CancellationToken cancellationToken = default)
            {
                await engine._paired.Task.WaitAsync(TimeSpan.FromSeconds(20), cancellationToken);
                await inner.RunAsync(cancellationToken);
            }

            public ReadOnlyMemory<byte> Output(int index) => inner.Output(index);

            public void Dispose()
            {
                Interlocked.Decrement(ref engine._inFlight);
                inner.Dispose();
            }
        }
    }
}
