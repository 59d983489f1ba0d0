using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own fp16 warpgroup-MMA product with its bias and erf GELU (BATCHWISE_GELU_PRODUCT=own, <see cref="KernelSource.HalfGemm"/>):
/// where the planner takes it, its weight packing, and its output against ONNX Runtime on the CPU kernel runner (wgmma,
/// its 128-byte swizzle, cp.async and the mbarriers emulated from their PTX definitions), with rows left over in the last
/// row tile, several column tiles and k steps, and blocks walking several tiles through one ring of stages.
/// </summary>
public sealed class HalfGemmOnCpuTests
{
    private static ExecutionPlan Compile(OnnxModel model, IReadOnlyList<Tensor> inputs, bool own, int computeCapability = 90, int multiprocessors = 132) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { GeluProductOwn = own, ComputeCapability = computeCapability, Multiprocessors = multiprocessors }.Compile(model, inputs);

    private static List<KernelStep> OwnProducts(ExecutionPlan plan) => [.. plan.Steps.OfType<KernelStep>().Where(k => k.Node.Contains("own fp16 product", StringComparison.Ordinal))];

    [Fact]
    public void Packed_weights_are_each_stage_image_in_the_128_byte_swizzle()
    {
        const long k = 128;
        // The first stage image (column tile 0, k step 0): column 9 is group 1, row 1; its k 8..15 are chunk 1, at 1 ^ 1 = 0.
        Assert.Equal((9L, 8L), KernelSource.HalfGemmPackedSource((1 * 512) + (1 * 64) + (0 * 8), k));
        Assert.Equal((9L, 15L), KernelSource.HalfGemmPackedSource((1 * 512) + (1 * 64) + (0 * 8) + 7, k));
        // The second k step of column tile 0 follows the first image (256 x 64 halves), then column tile 1's.
        Assert.Equal((0L, 64L), KernelSource.HalfGemmPackedSource(256 * 64, k));
        Assert.Equal((256L, 0L), KernelSource.HalfGemmPackedSource(2 * 256 * 64, k));

        // Every (column, k) of a 512 x 128 B exactly once.
        var seen = new HashSet<(long, long)>();
        for (long i = 0; i < 512 * k; i++)
        {
            Assert.True(seen.Add(KernelSource.HalfGemmPackedSource(i, k)));
        }

        Assert.Equal(512 * (int)k, seen.Count);
    }

    [Fact]
    public void The_switch_reads_library_or_own_and_refuses_anything_else_in_one_line()
    {
        Assert.False(GraphCompiler.GeluProductFrom(null));
        Assert.False(GraphCompiler.GeluProductFrom(" Library "));
        Assert.True(GraphCompiler.GeluProductFrom("own"));
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.GeluProductFrom("fast"));
        Assert.Contains("BATCHWISE_GELU_PRODUCT 'fast' is not library or own", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(256L, 64L, true)]
    [InlineData(3072L, 768L, true)]
    [InlineData(1536L, 384L, true)]
    [InlineData(128L, 768L, false)] // N not in 256s
    [InlineData(3072L, 96L, false)] // K not in 64s
    public void Takes_products_with_n_in_256s_and_k_in_64s(long n, long k, bool takes) =>
        Assert.Equal(takes, KernelSource.HalfGemmTakes(8192, n, k));

    [Fact]
    public void The_mlp_product_and_its_gelu_become_one_own_kernel_only_where_asked_and_on_sm_90()
    {
        var model = MatmulEpiloguePlanTests.VitMlp(2, 100, 128, 256);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 5);

        var own = Compile(model, inputs, own: true);
        var step = Assert.Single(OwnProducts(own));
        Assert.Equal(KernelSource.HalfGemmSharedBytes, step.SharedBytes);
        Assert.Equal(2u, step.Grid); // 200 rows: two row tiles of one column tile, a block a tile
        Assert.Equal(384, step.Block); // the producer warpgroup and two consumers
        Assert.Equal(1u, Assert.Single(OwnProducts(Compile(model, inputs, own: true, multiprocessors: 1))).Grid); // one block walks both
        Assert.Single(own.Steps.OfType<MatmulStep>()); // fc2 alone stays with the library
        Assert.DoesNotContain(own.Steps, s => s.Node.Contains("GELU (erf, in place)", StringComparison.Ordinal));

        Assert.Empty(OwnProducts(Compile(model, inputs, own: false)));
        Assert.Empty(OwnProducts(Compile(model, inputs, own: true, computeCapability: 89)));
        Assert.Empty(OwnProducts(new NoGpuTarget(Precision.Fp32, hostMatmuls: true) { GeluProductOwn = true }.Compile(model, inputs)));
    }

    [Theory]
    [InlineData(2L, 100L, 128L, 256L, 132)] // 200 rows: the second row tile 72 rows; K in two steps; a block a tile
    [InlineData(1L, 130L, 320L, 512L, 132)] // two row tiles x two column tiles; K in five steps (the ring reused within a tile)
    [InlineData(1L, 130L, 320L, 512L, 1)] // one block walks the four tiles: 20 k steps through the four stages, the row tile left over last
    [InlineData(3L, 100L, 192L, 512L, 3)] // 300 rows: six tiles for three blocks, two each; K in three steps (the ring across tiles)
    public void Own_product_with_bias_and_gelu_matches_onnx_runtime(long batch, long tokens, long width, long hidden, int multiprocessors)
    {
        CpuKernelRunner.Require();
        var model = MatmulEpiloguePlanTests.VitMlp(batch, tokens, width, hidden);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 7);
        var plan = Compile(model, inputs, own: true, multiprocessors: multiprocessors);
        Assert.Equal((uint)Math.Min(multiprocessors, KernelSource.HalfGemmTiles(batch * tokens, hidden)), Assert.Single(OwnProducts(plan)).Grid);

        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]);
        var actual = CpuKernelRunner.Run(plan, inputs);
        var difference = OperatorCaseModels.Difference(actual, expected, 2e-2);
        Assert.True(difference is null, difference);
    }
}
