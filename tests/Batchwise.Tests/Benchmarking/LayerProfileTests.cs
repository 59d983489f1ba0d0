using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Tests.Benchmarking;

public sealed class LayerProfileTests
{
    [Fact]
    public void Top_orders_slowest_first_with_shares_of_the_total()
    {
        var layers = Enumerable.Range(1, 12).Select(i => new LayerTime($"Conv 'c{i}'", i)).ToList();
        var profile = new LayerProfile(8, 20, layers);
        Assert.Equal(78, profile.TotalMilliseconds, 9);
        var top = profile.Top(10);
        Assert.Equal(10, top.Count);
        Assert.Equal("Conv 'c12'", top[0].Layer.Layer);
        Assert.Equal(12 / 78.0, top[0].Share, 9);
        Assert.Equal("Conv 'c3'", top[^1].Layer.Layer);
        Assert.True(top.Zip(top.Skip(1)).All(p => p.First.Layer.Milliseconds >= p.Second.Layer.Milliseconds));
    }

    [Fact]
    public void An_engine_without_layer_timings_is_refused_with_the_fix()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var e = Assert.Throws<BatchwiseException>(() => LayerProfile.Measure(EngineRegistry.Create("ort"), new EngineOptions(), model, new BenchmarkOptions(), [1], 2));
        Assert.Contains("no per-layer timings", e.Message, StringComparison.Ordinal);
        Assert.Contains("--engine cuda", e.Hint ?? string.Empty, StringComparison.Ordinal);
    }

    /// <summary>
    /// The run's own time (unprofiled, the median of its runs) comes with the layers, so a report can show that layer by
    /// layer the total is larger (events between layers): ResNet-50's b=1 layers summed to 0.473 ms against 0.317.
    /// </summary>
    [Fact]
    public void The_whole_run_is_timed_beside_the_layers()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var profile = Assert.Single(LayerProfile.Measure(new ProfilingEngine(), new EngineOptions(), model, new BenchmarkOptions(), [4], 5));
        Assert.Equal(3, profile.Layers.Count);
        Assert.Equal(0.6, profile.TotalMilliseconds, 9);
        Assert.Equal(0.3, profile.WholeRunMilliseconds!.Value, 9); // the median of 0.3 ms runs, a 9 ms outlier left out
    }

    /// <summary>An engine whose prepared runs take 0.3 ms (one in six 9 ms) and profile three 0.2 ms layers.</summary>
    private sealed class ProfilingEngine : IEngine
    {
        public string Name => "profiling";

        public EngineDescription Describe(EngineOptions options) => new("profiling", "1", "none", new Dictionary<string, string>());

        public IEngineSession Load(Batchwise.Onnx.OnnxModel model, EngineOptions options) => new Session(model);

        private sealed class Session(Batchwise.Onnx.OnnxModel model) : IEngineSession
        {
            public IReadOnlyList<Batchwise.Onnx.TensorSpec> Inputs => model.Inputs;

            public IReadOnlyList<Batchwise.Onnx.TensorSpec> Outputs => model.Outputs;

            public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default) => throw new NotSupportedException();

            public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs) => new Prepared();

            public void Dispose()
            {
            }
        }

        private sealed class Prepared : IPreparedRun, ILayerProfiling
        {
            private int _runs;

            public double Run() => ++_runs % 6 == 0 ? 9e-3 : 3e-4;

            public IReadOnlyList<Tensor> ReadOutputs() => [];

            public IReadOnlyList<LayerTime> ProfileLayers(int runs) => [new("a", 0.2), new("b", 0.2), new("c", 0.2)];

            public void Dispose()
            {
            }
        }
    }
}
