using Batchwise.Analysis;
using Batchwise.Zoo;

namespace Batchwise.Tests.Analysis;

public sealed class SpatialReductionTests
{
    [Fact]
    public void A_squeeze_excite_mean_at_a_small_batch_is_split_and_two_kernels_deep()
    {
        // EfficientNet-B0's first mean: 32 channels over 112 x 112. At b=4 four blocks would cover it, so the engine splits the
        // 12,544 rows into 196 ranges of 64 (8 loads a thread: 2 rounds of 4), then a warp per output walks 196 partials
        // (7 loads a lane: 2 rounds).
        var mean = new SpatialReduction(112 * 112, 32);
        Assert.Equal(196, mean.Splits(4));
        Assert.Equal(4, mean.LatencyRounds(4));

        // At b=256 the blocks fill the GPU with 4 ranges of 3,136 rows: 392 loads a thread, 98 rounds, then one of partials.
        Assert.Equal(4, mean.Splits(256));
        Assert.Equal(98 + 1, mean.LatencyRounds(256));

        // A 7 x 7 mean is never split (ranges are at least 64 rows): one kernel, 7 loads a thread.
        Assert.Equal(1, new SpatialReduction(49, 1152).Splits(4));
        Assert.Equal(2, new SpatialReduction(49, 1152).LatencyRounds(4));
    }

    [Fact]
    public void A_chain_of_round_trips_costs_a_kernel_floor_each_unless_its_bytes_take_longer()
    {
        var gpu = Synthetic.Gpu() with { KernelFloorSeconds = 2e-6 };
        var predictor = new ThroughputPredictor(gpu);
        var small = predictor.Predict(new LayerWork("mean", "ReduceMean", 0, 2e3, LatencyRounds: 4));
        Assert.Equal(4 * 2e-6, small.Seconds, 1e-9); // 1 ns of bytes inside the chain of four floors
        var large = predictor.Predict(new LayerWork("mean", "ReduceMean", 0, 2e8, LatencyRounds: 4));
        Assert.Equal(100e-6 + 2e-6, large.Seconds, 1e-9); // 100 µs of bytes hide the round trips: one floor on top
        var pass = predictor.Predict(new LayerWork("relu", "Relu", 0, 2e3));
        Assert.Equal(2e-6 + 1e-9, pass.Seconds, 1e-9);
    }

    [Fact]
    public void The_cuda_engine_in_half_precision_runs_resnets_stem_as_one_kernel_from_the_float_input()
    {
        var model = ModelZoo.Build("zoo:resnet50");
        var layers = ModelWork.Analyze(model, null, fusesEpilogues: true).At(2);
        var fusedWork = ModelWork.Analyze(model, null, fusesEpilogues: true, fusesAttention: true, fusesStem: true);
        var fused = fusedWork.At(2);
        var conv = layers.First(l => l.OpType == "Conv");
        var stem = fused.First(l => l.OpType == "Conv");
        Assert.Equal(conv.Flops, stem.Flops);

        // Reads the float32 input at 4 bytes an element (twice its graph bytes, as the caller halves them) and writes the
        // pooled 64 x 56 x 56 only; the pooling launches nothing and the input has no conversion kernel.
        var weights = conv.Bytes - (2 * 4.0 * ((3 * 224 * 224) + (64 * 112 * 112)));
        Assert.Equal(weights + (2 * 4.0 * ((2 * 3 * 224 * 224) + (64 * 56 * 56))), stem.Bytes, 1e-6);
        Assert.True(layers.First(l => l.OpType == "MaxPool").LaunchesKernel);
        Assert.False(fused.First(l => l.OpType == "MaxPool").LaunchesKernel);
        Assert.DoesNotContain(fusedWork.FloatBoundaries, t => t.IsInput);
        Assert.Contains(ModelWork.Analyze(model, null, fusesEpilogues: true).FloatBoundaries, t => t.IsInput);
    }

    [Theory]
    [InlineData(256, true)] // 128 convolution output columns: the kernel's widest
    [InlineData(320, false)] // 160 columns: the engine runs the stem layer by layer, and so must explain price it
    public void Resnets_stem_is_one_kernel_only_at_sizes_the_engines_kernel_takes(int side, bool fused)
    {
        var work = ModelWork.Analyze(ModelZoo.Build($"zoo:resnet18?size={side}"), null, fusesEpilogues: true, fusesAttention: true, fusesStem: true);
        Assert.Equal(!fused, work.At(1).First(l => l.OpType == "MaxPool").LaunchesKernel);
        Assert.Equal(!fused, work.FloatBoundaries.Any(t => t.IsInput));
    }
}
