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
}
