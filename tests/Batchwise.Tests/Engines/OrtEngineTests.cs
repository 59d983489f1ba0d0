using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Engines;

public sealed class OrtEngineTests
{
    [Fact]
    public void Mlp_runs_and_softmax_rows_sum_to_one()
    {
        var model = ModelZoo.Build("zoo:mlp");
        using var session = new OrtEngine().Load(model, new EngineOptions());
        var rng = new Random(1);
        var x = Tensor.From<float>(ElementType.Float, [3, 64], Enumerable.Range(0, 3 * 64).Select(_ => (float)rng.NextDouble()).ToArray());
        var y = Assert.Single(session.Run([x]));
        Assert.Equal([3L, 10L], y.Shape);
        var v = y.AsSpan<float>();
        for (var r = 0; r < 3; r++)
        {
            var sum = 0f;
            for (var c = 0; c < 10; c++)
            {
                sum += v[(r * 10) + c];
            }

            Assert.Equal(1f, sum, 1e-5f);
        }
    }

    [Fact]
    public void Prepared_run_gives_the_same_outputs_as_run()
    {
        var model = ModelZoo.Build("zoo:mlp");
        using var session = new OrtEngine().Load(model, new EngineOptions());
        var x = Tensor.From<float>(ElementType.Float, [2, 64], Enumerable.Range(0, 128).Select(i => i / 128f).ToArray());
        var expected = session.Run([x])[0].ToDoubles();
        using var prepared = session.Prepare([x]);
        var seconds = prepared.Run();
        Assert.True(seconds > 0);
        Assert.Equal(expected, prepared.ReadOutputs()[0].ToDoubles());
    }

    [Fact]
    public void Transfers_are_refused_because_runs_already_start_and_end_in_host_memory()
    {
        var e = Assert.Throws<BatchwiseException>(() => new OrtEngine().Load(ModelZoo.Build("zoo:mlp"), new EngineOptions { IncludeTransfers = true }));
        Assert.Contains("--transfers", e.Message, StringComparison.Ordinal);
        Assert.Contains("nothing to transfer", e.Message, StringComparison.Ordinal);
        Assert.Contains("--engine cuda", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_execution_provider_names_the_package_to_install()
    {
        var model = ModelZoo.Build("zoo:mlp");
        var e = Assert.Throws<BatchwiseException>(() => new OrtEngine().Load(model, new EngineOptions { ExecutionProvider = "cuda" }));
        Assert.Contains("Microsoft.ML.OnnxRuntime.Gpu", e.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_engine_lists_the_known_ones()
    {
        var e = Assert.Throws<BatchwiseException>(() => EngineRegistry.Create("tensorflow"));
        Assert.Contains("ort", e.Hint, StringComparison.Ordinal);
    }
}
