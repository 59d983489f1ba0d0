using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own fp16 warpgroup-MMA product with its bias and erf GELU (BATCHWISE_GELU_PRODUCT=own, <see cref="KernelSource.HalfGemm"/>):
/// where the planner takes it, its tensor maps, and its output against ONNX Runtime on the CPU kernel runner (wgmma,
/// its 128-byte swizzle, the TMA tensor copies and the mbarriers emulated from their PTX definitions), with rows left
/// over in the last row tile (read as zeros past M), several column tiles and k steps, and blocks walking several tiles
/// through one ring of stages.
/// </summary>
public sealed class HalfGemmOnCpuTests
{
    private static ExecutionPlan Compile(OnnxModel model, IReadOnlyList<Tensor> inputs, bool own, int computeCapability = 90, int multiprocessors = 132, int minTiles = 0) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { GeluProductOwn = own, ComputeCapability = computeCapability, Multiprocessors = multiprocessors, GeluProductMinTiles = minTiles }.Compile(model, inputs);

    private static List<KernelStep> OwnProducts(ExecutionPlan plan) => [.. plan.Steps.OfType<KernelStep>().Where(k => k.Node.Contains("own fp16 product", StringComparison.Ordinal))];

    [Fact]
    public void The_switch_reads_library_or_own_and_refuses_anything_else_in_one_line()
    {
        Assert.True(GraphCompiler.GeluProductFrom(null)); // the default, where it qualifies
        Assert.False(GraphCompiler.GeluProductFrom(" Library "));
        Assert.True(GraphCompiler.GeluProductFrom("own"));
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.GeluProductFrom("fast"));
        Assert.Contains("BATCHWISE_GELU_PRODUCT 'fast' is not own or library", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_tiles_switch_reads_a_count_and_refuses_anything_else_in_one_line()
    {
        Assert.Equal(0, GraphCompiler.GeluProductTilesFrom(null)); // one a multiprocessor
        Assert.Equal(0, GraphCompiler.GeluProductTilesFrom(" "));
        Assert.Equal(64, GraphCompiler.GeluProductTilesFrom(" 64 "));
        foreach (var bad in new[] { "0", "-3", "half", "5000" })
        {
            var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.GeluProductTilesFrom(bad));
            Assert.Contains($"BATCHWISE_GELU_PRODUCT_TILES '{bad}' is not a count from 1 to 4096", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Fewer_tiles_than_multiprocessors_go_to_the_own_kernel_only_where_the_tiles_switch_allows_them()
    {
        var model = MatmulEpiloguePlanTests.VitMlp(2, 100, 128, 256); // 200 rows x 256: two tiles
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 5);

        Assert.Empty(OwnProducts(Compile(model, inputs, own: true, multiprocessors: 3))); // two tiles for three multiprocessors: the library's
        Assert.Equal(2u, Assert.Single(OwnProducts(Compile(model, inputs, own: true, multiprocessors: 3, minTiles: 2))).Grid); // two allowed: a block a tile
        Assert.Empty(OwnProducts(Compile(model, inputs, own: true, multiprocessors: 3, minTiles: 3)));
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

        var own = Compile(model, inputs, own: true, multiprocessors: 2);
        var step = Assert.Single(OwnProducts(own));
        Assert.Equal(KernelSource.HalfGemmSharedBytes, step.SharedBytes);
        Assert.Equal(2u, step.Grid); // 200 rows: two row tiles of one column tile, a block a tile
        Assert.Equal(384, step.Block); // the producer warpgroup and two consumers
        // Tensor maps of X [200, 128] (128 x 64 boxes) and W^T [256, 128] (two 128 x 64 boxes a stage) over the step's buffers 1 and 2.
        Assert.Equal([new HalfTensorMap(1, 200, 128, 128, 64), new HalfTensorMap(2, 256, 128, 128, 64)], step.TensorMaps);
        Assert.Contains("const __grid_constant__ bw_tensor_map map_x, const __grid_constant__ bw_tensor_map map_w", step.Source, StringComparison.Ordinal);
        Assert.Equal(1u, Assert.Single(OwnProducts(Compile(model, inputs, own: true, multiprocessors: 1))).Grid); // one block walks both
        Assert.Single(own.Steps.OfType<MatmulStep>()); // fc2 alone stays with the library
        Assert.DoesNotContain(own.Steps, s => s.Node.Contains("GELU (erf, in place)", StringComparison.Ordinal));

        Assert.Empty(OwnProducts(Compile(model, inputs, own: false, multiprocessors: 2)));
        Assert.Empty(OwnProducts(Compile(model, inputs, own: true, computeCapability: 89, multiprocessors: 2)));
        Assert.Empty(OwnProducts(new NoGpuTarget(Precision.Fp32, hostMatmuls: true) { GeluProductOwn = true, Multiprocessors = 2 }.Compile(model, inputs)));
        Assert.Empty(OwnProducts(Compile(model, inputs, own: true, multiprocessors: 3))); // two tiles would leave a multiprocessor idle: the library's
    }

    [Theory]
    [InlineData(2L, 100L, 128L, 256L, 2)] // 200 rows: the second row tile 72 rows; K in two steps; a block a tile
    [InlineData(1L, 130L, 320L, 512L, 4)] // two row tiles x two column tiles; K in five steps (the ring reused within a tile)
    [InlineData(1L, 130L, 320L, 512L, 1)] // one block walks the four tiles: 20 k steps through the stages, the row tile left over last
    [InlineData(3L, 100L, 192L, 512L, 3)] // 300 rows: six tiles for three blocks, two each; K in three steps (the ring across tiles)
    [InlineData(2L, 100L, 64L, 256L, 1)] // K in one step a tile
    [InlineData(1L, 300L, 1280L, 256L, 1)] // K in 20 steps (the ring lapped five times a tile)
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

    [Fact]
    public void Own_product_of_a_transposed_gemm_weight_reads_it_as_it_is_and_matches_onnx_runtime()
    {
        CpuKernelRunner.Require();
        // Gemm(transB) + bias, then the exported erf GELU: W [N, K] is already the map's W^T (no transposed copy).
        const long Rows = 150, Width = 128, Hidden = 512;
        var g = new GraphBuilder("gemm_gelu", 9);
        var x = g.Input("x", ElementType.Float, Rows, Width);
        var h = g.Node("Gemm", [x, g.Weight("w1", [Hidden, Width], 1 / MathF.Sqrt(Width)), g.Weight("b1", [Hidden], 0.5f)], GraphBuilder.Attr("transB", 1L));
        var erf = g.Node("Erf", [g.Node("Div", [h, g.Initializer("sqrt2", [], [MathF.Sqrt(2f)])])]);
        var gelu = g.Node("Mul", [g.Node("Mul", [h, g.Node("Add", [erf, g.Initializer("one", [], [1f])])]), g.Initializer("half", [], [0.5f])]);
        g.Output(g.Rename(gelu, "y"), ElementType.Float, Rows, Hidden);
        var model = g.Build("gemm_gelu", 17);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 3);
        var plan = Compile(model, inputs, own: true, multiprocessors: 2);
        var step = Assert.Single(OwnProducts(plan));
        Assert.Equal(plan.Buffers.Single(b => b.Constant is { } c && c.Shape.SequenceEqual([Hidden, Width])).Id, step.Buffers[2]);

        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]);
        var difference = OperatorCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, 2e-2);
        Assert.True(difference is null, difference);
    }

    [Fact]
    public unsafe void The_kernels_gelu_is_within_a_few_e_minus_7_of_the_erf_gelu_and_keeps_the_negative_tail()
    {
        CpuKernelRunner.Require();
        // bw_gelu_as over x in [-8, 8] against GELU in double (erf by its series / continued fraction, to 1e-15).
        const int Count = 16 * 256 + 1;
        var w = new KernelWriter(small: true);
        var n = w.I32("n", Count);
        w.Body.Append($"    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);\n    if (i < {n}) y[i] = bw_gelu_as(x[i]);\n");
        var code = w.Build($"float* __restrict__ y, const float* __restrict__ x, {KernelWriter.ArgsParameter}");
        code = code with { Source = KernelSource.HalfGemmGeluHelper + code.Source };
        var xs = Enumerable.Range(0, Count).Select(i => -8f + (i / 256f)).ToArray();
        var ys = new float[Count];
        fixed (float* xp = xs, yp = ys)
        {
            CpuKernelRunner.Run(code, [(IntPtr)yp, (IntPtr)xp], Count, 256);
        }

        for (var i = 0; i < Count; i++)
        {
            double x = xs[i], phi = 0.5 * Erfc(-x / Math.Sqrt(2)), want = x * phi;
            Assert.True(Math.Abs(ys[i] - want) <= (1.5e-7 * Math.Abs(x)) + (2e-7 * Math.Abs(want)), $"gelu({x}) = {ys[i]:E6}, want {want:E6}");
            if (x is <= -3 and >= -5.25)
            {
                // No cancellation: Phi's relative error stays small where 1 + erf(x) would have lost it to fp32's 6e-8 at 1
                // (20% at x = -5), down to where fp16 still holds y (6e-8 at x = -5.3; below, A&S drifts to 1% at -8).
                Assert.True(Math.Abs((ys[i] / want) - 1) < 1e-2, $"gelu({x}) = {ys[i]:E6}, want {want:E6}");
            }
        }
    }

    /// <summary>erfc in double: the Maclaurin series below 2.5, Lentz's continued fraction above.</summary>
    private static double Erfc(double z)
    {
        if (z < 0)
        {
            return 2 - Erfc(-z);
        }

        if (z < 2.5)
        {
            double sum = 0, term = z;
            for (var k = 0; k < 200; k++)
            {
                sum += term / ((2 * k) + 1);
                term *= -z * z / (k + 1);
            }

            return 1 - (2 / Math.Sqrt(Math.PI) * sum);
        }

        // erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + 2/(z + ...))))
        var f = z;
        for (var k = 60; k >= 1; k--)
        {
            f = z + (k / 2.0 / f);
        }

        return Math.Exp(-z * z) / Math.Sqrt(Math.PI) / f;
    }
}
