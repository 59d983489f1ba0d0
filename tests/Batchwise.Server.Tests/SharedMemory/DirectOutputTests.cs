using System.Runtime.InteropServices;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Server.Tests.SharedMemory;

/// <summary>
/// Outputs written by the engine straight into a request's shared memory (a <see cref="TensorTarget"/>), with no managed
/// copy: on ort from ONNX Runtime's own output memory, on a staging engine through <see cref="IStagedRun.TryCopyOutput"/>.
/// A delivered output's tensor has no array of its own (its Source reads the target back, DeliveredTo is the target), so
/// the server has nothing left to copy: that is what these tests check, with the bytes in the target.
/// </summary>
public sealed class DirectOutputTests : IDisposable
{
    private const int Width = 64; // zoo:mlp: float32 [N, 64] in
    private readonly List<IntPtr> _allocations = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        foreach (var p in _allocations)
        {
            Marshal.FreeHGlobal(p);
        }
    }

    /// <summary>Unmanaged memory standing in for a mapped region, filled with a marker byte.</summary>
    private HostTensorTarget Region(long bytes)
    {
        var p = Marshal.AllocHGlobal((nint)bytes);
        _allocations.Add(p);
        Marshal.Copy(Enumerable.Repeat((byte)0xAB, (int)bytes).ToArray(), 0, p, (int)bytes);
        return new HostTensorTarget(p, bytes, pageLocked: false);
    }

    private static float[] Floats(HostTensorTarget t, int count)
    {
        var values = new float[count];
        Marshal.Copy(t.Pointer, values, 0, count);
        return values;
    }

    /// <summary>zoo:mlp served on <paramref name="engine"/> (registered under a fresh name), a batch sent only once full.</summary>
    private static ServedModel ServedOn(IEngine engine, string prefix, int maxBatchSize)
    {
        var name = prefix + Guid.NewGuid().ToString("N");
        EngineRegistry.Register(name, () => engine);
        return ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), new ModelConfig { MaxBatchSize = maxBatchSize, Engine = name, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 30_000_000 } }, new ServerMetrics());
    }

    private static NamedTensor Input(int rows, int seed) => new("input", Tensor.From<float>(ElementType.Float, [rows, Width], ServerFixture.Input(rows, seed)));

    [Fact]
    public async Task On_ort_a_lone_request_gets_its_output_written_into_its_region_by_the_engine()
    {
        await using var model = ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), new ModelConfig { MaxBatchSize = 8 }, new ServerMetrics());
        var expected = ServerFixture.Expected(ServerFixture.Input(2, 3), 2);
        var target = Region((expected.Length * sizeof(float)) + 16);

        var outputs = await model.InferAsync([Input(2, 3)], 0, null, Ct, outputTargets: [target]);

        Assert.Same(target, outputs[0].Source?.DeliveredTo);
        Assert.Equal(expected, Floats(target, expected.Length));
        Assert.Equal(0xAB, Marshal.ReadByte(target.Pointer, expected.Length * sizeof(float))); // nothing past the output's bytes
        Assert.Equal(expected, outputs[0].AsSpan<float>().ToArray()); // read back from the region when asked
    }

    [Fact]
    public async Task On_ort_each_request_of_a_merged_batch_gets_its_own_rows_in_its_region_and_a_region_too_small_gets_none()
    {
        // Three requests of 2 rows, sent as one batch once it is full (6 rows; the queue delay never runs out first).
        await using var model = ServedModel.Load("mlp", Zoo.ModelZoo.Build("zoo:mlp"), new ModelConfig { MaxBatchSize = 6, DynamicBatching = new DynamicBatchingConfig { MaxQueueDelayMicroseconds = 30_000_000 } }, new ServerMetrics());
        var expected = Enumerable.Range(1, 3).Select(seed => ServerFixture.Expected(ServerFixture.Input(2, seed), 2)).ToArray();
        var bytes = expected[0].Length * sizeof(float);
        TensorTarget?[] targets = [Region(bytes), Region(bytes - 1), null];

        var results = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => model.InferAsync([Input(2, i + 1)], 0, null, Ct, outputTargets: [targets[i]])));

        Assert.Same(targets[0], results[0][0].Source?.DeliveredTo);
        Assert.Equal(expected[0], Floats((HostTensorTarget)targets[0]!, expected[0].Length));

        // Too small: left to the server (which answers 400 for it), its bytes computed as usual, the region untouched.
        Assert.Null(results[1][0].Source);
        Assert.Equal(expected[1], results[1][0].AsSpan<float>().ToArray());
        Assert.Equal(0xAB, Marshal.ReadByte(((HostTensorTarget)targets[1]!).Pointer));

        Assert.Null(results[2][0].Source);
        Assert.Equal(expected[2], results[2][0].AsSpan<float>().ToArray());
    }

    [Fact]
    public async Task On_a_staging_engine_the_rows_go_from_the_run_to_the_region_and_the_server_copies_nothing()
    {
        var engine = new TargetStagingEngine();
        await using var model = ServedOn(engine, "staged-out-", maxBatchSize: 4);
        var expected = Enumerable.Range(1, 2).Select(seed => ServerFixture.Expected(ServerFixture.Input(2, seed), 2)).ToArray();
        var bytes = expected[0].Length * sizeof(float);
        var targets = new[] { Region(bytes), Region(bytes) };

        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(i => model.InferAsync([Input(2, i + 1)], 0, null, Ct, outputTargets: [targets[i]])));

        Assert.Equal(2, engine.RowsWritten);
        for (var i = 0; i < 2; i++)
        {
            Assert.Same(targets[i], results[i][0].Source?.DeliveredTo);
            Assert.Equal(expected[i], Floats(targets[i], expected[i].Length));
        }
    }

    [Fact]
    public async Task Rows_a_staging_engine_leaves_in_staging_go_from_there_to_the_region_and_a_region_too_small_gets_none()
    {
        // The engine refuses every output target (as the cuda engine refuses rows under BATCHWISE_HOST_ROW_BYTES): the
        // server copies each request's rows from the run's staging buffer to its region, with no managed copy of the batch.
        var engine = new TargetStagingEngine(refuses: true);
        await using var model = ServedOn(engine, "staged-refuse-", maxBatchSize: 6);
        var expected = Enumerable.Range(1, 3).Select(seed => ServerFixture.Expected(ServerFixture.Input(2, seed), 2)).ToArray();
        var bytes = expected[0].Length * sizeof(float);
        var targets = new[] { Region(bytes), Region(bytes - 1), Region(bytes) };

        var results = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => model.InferAsync([Input(2, i + 1)], 0, null, Ct, outputTargets: [targets[i]])));

        Assert.Equal(0, engine.RowsWritten);
        foreach (var i in new[] { 0, 2 })
        {
            Assert.Same(targets[i], results[i][0].Source?.DeliveredTo);
            Assert.Equal(expected[i], Floats(targets[i], expected[i].Length));
        }

        Assert.Null(results[1][0].Source);
        Assert.Equal(expected[1], results[1][0].AsSpan<float>().ToArray());
        Assert.Equal(0xAB, Marshal.ReadByte(targets[1].Pointer));
    }

    [Fact]
    public async Task On_a_staging_engine_that_knows_output_shapes_only_once_run_requests_with_regions_get_their_outputs()
    {
        // A data-dependent model on cuda stages through ManagedStagedRun, whose output shapes are unknown before the run:
        // nothing goes to a region in place, and every request still gets its own outputs (this threw before).
        var engine = new StagedOrtEngine();
        await using var model = ServedOn(engine, "staged-late-shapes-", maxBatchSize: 4);
        var expected = Enumerable.Range(1, 2).Select(seed => ServerFixture.Expected(ServerFixture.Input(2, seed), 2)).ToArray();
        var targets = new[] { Region(expected[0].Length * sizeof(float)), Region(expected[1].Length * sizeof(float)) };

        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(i => model.InferAsync([Input(2, i + 1)], 0, null, Ct, outputTargets: [targets[i]])));

        for (var i = 0; i < 2; i++)
        {
            Assert.Null(results[i][0].Source);
            Assert.Equal(expected[i], results[i][0].AsSpan<float>().ToArray());
        }
    }

    /// <summary>ONNX Runtime behind <see cref="IStagedExecution"/>, whose runs write rows to host targets as the cuda engine's do.</summary>
    private sealed class TargetStagingEngine(bool refuses = false) : IEngine
    {
        private int _rowsWritten;

        public string Name => "staged-out";

        public int RowsWritten => Volatile.Read(ref _rowsWritten);

        /// <summary>True when its runs refuse every output target (the rows stay in staging).</summary>
        public bool Refuses => refuses;

        public EngineDescription Describe(EngineOptions options) => new(Name, "test", "none", new Dictionary<string, string>());

        public IEngineSession Load(OnnxModel model, EngineOptions options) => new Session(this, new OrtEngine().Load(model, options));

        private sealed class Session(TargetStagingEngine engine, IEngineSession inner) : IEngineSession, IStagedExecution
        {
            public IReadOnlyList<TensorSpec> Inputs => inner.Inputs;

            public IReadOnlyList<TensorSpec> Outputs => inner.Outputs;

            public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default) => inner.Run(inputs, cancellationToken);

            public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) => inner.Prepare(inputs);

            public IStagedRun Stage(IReadOnlyList<long[]> inputShapes) => new Run(engine, new ManagedStagedRun(inner, inputShapes), [inputShapes[0][0], inner.Outputs[0].Shape[1].Value!.Value]);

            public void Dispose() => inner.Dispose();
        }

        private sealed class Run(TargetStagingEngine engine, ManagedStagedRun inner, long[] outputShape) : IStagedRun
        {
            private readonly List<(int Index, long Offset, long Bytes, TensorTarget Target)> _direct = [];

            // The shapes are known before the run, as the cuda engine's.
            public IReadOnlyList<long[]> OutputShapes => [outputShape];

            public Memory<byte> Input(int index) => inner.Input(index);

            public bool TryCopyOutput(int index, long byteOffset, long byteCount, TensorTarget target)
            {
                if (engine.Refuses)
                {
                    return false;
                }

                _direct.Add((index, byteOffset, byteCount, target));
                return true;
            }

            public async Task RunAsync(CancellationToken cancellationToken = default)
            {
                await inner.RunAsync(cancellationToken);
                foreach (var (index, offset, bytes, target) in _direct)
                {
                    target.CopyFrom(inner.Output(index).Span.Slice((int)offset, (int)bytes));
                    Interlocked.Increment(ref engine._rowsWritten);
                }
            }

            // Rows that went to their targets are not here: a server that copied them from here would copy garbage. A run
            // that refuses targets keeps every row here, as the cuda engine's staging buffer does.
            public ReadOnlyMemory<byte> Output(int index) => engine.Refuses ? inner.Output(index) : new byte[inner.Output(index).Length];

            public void Dispose() => inner.Dispose();
        }
    }
}
