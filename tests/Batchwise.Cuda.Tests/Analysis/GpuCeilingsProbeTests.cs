using Batchwise.Analysis;
using Batchwise.Cuda.Analysis;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Analysis;

/// <summary>What the probe's grouped table times at each width: the routine the engine's lowering picks for it.</summary>
public sealed class GpuCeilingsProbeTests
{
    [Theory]
    [InlineData("fp16", 24, "Auto", "own")] // RegNet's width: the own tensor-core kernel
    [InlineData("fp16", 48, "Auto", "own")]
    [InlineData("fp16", 32, "Auto", "cudnn")] // ResNeXt's powers of two stay with cuDNN
    [InlineData("fp16", 4, "Own", "cudnn")] // below 8 channels the own kernel cannot run
    [InlineData("fp16", 32, "Own", "own")]
    [InlineData("fp16", 24, "Cudnn", "cudnn")]
    [InlineData("fp32", 24, "Auto", "cudnn")] // fp32 is always cuDNN's
    public void Grouped_table_times_the_routine_the_engine_picks(string precision, int width, string choice, string expected) =>
        Assert.Equal(expected, GpuCeilingsProbe.GroupedRoutine(precision, width, Enum.Parse<GroupedConvChoice>(choice)));

    [Theory]
    [InlineData(false, 1)] // --tactics heuristic: cuDNN's heuristics' first allowed algorithm, so the tables time that one
    [InlineData(true, int.MaxValue)] // timed tactics (the default): every allowed algorithm, as the engine times them
    public void Conv_tables_time_the_algorithms_the_engine_would_choose_from(bool timed, int expected) =>
        Assert.Equal(expected, GpuCeilingsProbe.CudnnCandidates(timed));

    [Theory]
    [InlineData(false, 1)] // --tactics heuristic: cuBLASLt's heuristic choice, which the engine then runs
    [InlineData(true, 8)] // timed tactics (the default): as many candidates as a product's plan times
    public void Gemm_tables_time_the_candidates_the_engine_would_choose_from(bool timed, int expected)
    {
        Assert.Equal(expected, GpuCeilingsProbe.GemmCandidates(timed));
        Assert.Equal(GraphCompiler.MatmulCandidates, GpuCeilingsProbe.GemmCandidates(true));
    }

    [Fact]
    public void Tables_are_measured_down_to_a_7x7_image_at_batch_1_and_at_every_image_side_of_a_resnet()
    {
        // A layer below the smallest N is priced at that N's time: ResNet's 7x7 stage at b=1 needs its own point.
        var n = new GpuCeilingsProbe().TableN;
        Assert.Equal(49, n.Min());
        Assert.All(new[] { 7 * 7, 14 * 14, 28 * 28, 56 * 56 }, side => Assert.Contains(side, n));

        // No two neighbouring N more than 16x apart, and one between 3,136 and 50,176, where the rates bend.
        var sorted = n.Order().ToList();
        Assert.All(sorted.Zip(sorted.Skip(1)), p => Assert.InRange((double)p.Second / p.First, 1, 16));
        Assert.Contains(sorted, v => v is > 3136 and < 50176);
    }

    [Fact]
    public void Gemm_tables_have_a_point_within_a_factor_2_of_every_transformer_row_count_up_to_batch_256_at_sequence_128()
    {
        // BERT's products at N = 128 x batch: between two GEMM points 4x apart the log-linear rate fell short of the curve.
        var probe = new GpuCeilingsProbe();
        var n = probe.TableN.Concat(probe.GemmExtraN).Distinct().Order().ToList();
        var sorted = n.Where(v => v is >= 196 and <= 50176).ToList();
        Assert.All(sorted.Zip(sorted.Skip(1)), p => Assert.InRange((double)p.Second / p.First, 1, 2.01));
        Assert.All(Enumerable.Range(0, 9).Select(i => 128 << i), rows => Assert.Contains(n, v => v >= rows / 2.0 && v <= rows * 2.0));
    }

    [Fact]
    public void Fp32_pointwise_and_strided_tables_cover_a_resnets_sides_and_channels()
    {
        // ResNet-50's 1x1s run at 56, 28, 14 and 7 (K 64 to 2,048), its stride-2 3x3s output 28, 14 and 7: the tables
        // have each side (the 56x56 one under the bare name) and K up to 2,048, so no 1x1 is held at a smaller K's rate.
        var probe = new GpuCeilingsProbe();
        Assert.Equal([7, 14, 28, 56], probe.PointwiseAndStridedSides.Order());
        Assert.Equal(2048, probe.PointwiseInputs.Max());
        Assert.Equal(["conv-s2", "conv-s2@28", "pointwise", "pointwise@7"], new[] { ("conv-s2", 56), ("conv-s2", 28), ("pointwise", 56), ("pointwise", 7) }.Select(t => LayerRates.ConvTableName(t.Item1, t.Item2)));
    }

    [Fact]
    public void Fp32_conv_side_tables_reach_a_resnets_inner_layers_at_the_studys_largest_batch()
    {
        // ResNet-50's 28x28 and 14x14 3x3 layers at b=256 (128 and 256 channels) are under the side tables' FLOPs cap, so
        // they are measured at their own side and N, not held at the rate of a smaller N of 56x56 images.
        var probe = new GpuCeilingsProbe();
        Assert.Equal([7, 14, 28], probe.ConvExtraSides.Order());
        Assert.Equal(256, probe.ConvSideBatches.Max());
        Assert.Equal(1, probe.ConvSideBatches.Min());
        foreach (var (side, channels) in new[] { (28, 128), (14, 256) })
        {
            var nodeOutputs = probe.ConvOutputs.Where(o => o >= channels).Min();
            var nodeInputs = probe.ConvInputs.Where(c => c >= channels).Min();
            Assert.True(2.0 * nodeOutputs * 9 * nodeInputs * 256 * side * side <= probe.ConvSideFlopsCap, $"{side}x{side}, {channels} channels");
        }
    }

    [Fact]
    public void Grouped_tables_are_measured_at_every_batch_octave_to_8() =>
        Assert.Equal([1, 2, 4, 8], new GpuCeilingsProbe().GroupedBatches.Where(b => b <= 8));

    [Fact]
    public void Tactics_are_timed_unless_heuristics_are_asked_for()
    {
        Assert.True(CudaSession.TimesTactics(TacticSelection.Timed));
        Assert.False(CudaSession.TimesTactics(TacticSelection.Heuristic));
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("BATCHWISE_CUDNN_ALGO")))
        {
            Assert.True(CudaSession.TimesTactics(TacticSelection.EngineDefault));
        }
    }

    [Fact]
    public void Default_tables_are_shapes_the_engine_kernels_take()
    {
        // The probe's own-kernel shapes generate (a bad shape would cost a table on the GPU, found only there).
        var probe = new GpuCeilingsProbe();
        long side = probe.GroupedSide, c = probe.DepthwiseChannels;
        foreach (var (type, nhwc) in new[] { (ElementType.Float16, true), (ElementType.Float, false) })
        {
            foreach (var window in probe.DepthwiseWindows)
            {
                foreach (var stride in new long[] { 1, 2 })
                {
                    var vector = KernelSource.DepthwiseVector(type, nhwc, c);
                    var code = KernelSource.Depthwise(type, nhwc, vector, probe.GroupedBatches.Max(), c, [side * stride, side * stride], [side, side], [window, window], [stride, stride], [1, 1], [window / 2, window / 2]);
                    Assert.Contains("__global__", code.Source, StringComparison.Ordinal);
                }
            }
        }

        Assert.All(probe.GroupWidths, w => Assert.Equal(0, probe.GroupedChannels % w));

        // At the 28x28 side and at every further side the grouped tables are measured at.
        foreach (long gside in new[] { probe.GroupedSide }.Concat(probe.GroupedExtraSides))
        {
            foreach (var width in probe.GroupWidths.Where(w => GpuCeilingsProbe.GroupedRoutine("fp16", w, GroupedConvChoice.Auto) == "own"))
            {
                // Where the tile does not fit 48 KB (width 48) the engine's auto choice, and so the probe, stays with cuDNN.
                if (KernelSource.GroupedConvTilesPerWarp(width, width, [3, 3], [1, 1], [1, 1], gside, KernelCache.StaticSharedBytes) is not { } tiles)
                {
                    Assert.NotEqual(24, width); // RegNet's width, the case the own kernel is for, must be timed on it
                    continue;
                }

                var code = KernelSource.GroupedConv(width, width, [3, 3], [1, 1], [1, 1], tiles, new GroupedConvEpilogue(null, false, false), 256, probe.GroupedChannels / width, [gside, gside], [gside, gside], [1, 1]);
                Assert.Contains("__global__", code.Source, StringComparison.Ordinal);

                // The stride-2 table's shape (the input twice as wide) generates too where the tile fits.
                if (KernelSource.GroupedConvTilesPerWarp(width, width, [3, 3], [2, 2], [1, 1], gside, KernelCache.StaticSharedBytes) is { } strided)
                {
                    var s2 = KernelSource.GroupedConv(width, width, [3, 3], [2, 2], [1, 1], strided, new GroupedConvEpilogue(null, false, false), 256, probe.GroupedChannels / width, [2 * gside, 2 * gside], [gside, gside], [1, 1]);
                    Assert.Contains("__global__", s2.Source, StringComparison.Ordinal);
                }
                else
                {
                    Assert.NotEqual(24, width); // RegNet's strided layers run on the own kernel too
                }
            }
        }
    }
}
