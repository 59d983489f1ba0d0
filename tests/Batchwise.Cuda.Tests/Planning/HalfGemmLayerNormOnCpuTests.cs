using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own fp16 product with the residual add and the LayerNorm in its epilogue (BATCHWISE_LAYERNORM_PRODUCT=own,
/// <see cref="KernelSource.HalfGemmLayerNorm"/>, off by default): where the planner takes it, and its output against ONNX
/// Runtime on the CPU kernel runner (the cluster emulated: every block's products and statistics, then every block's
/// products again and the normalization over its peers' statistics), with one to three blocks a row and a last row tile
/// of rows left over.
/// </summary>
public sealed class HalfGemmLayerNormOnCpuTests
{
    /// <summary>A post-LN encoder's sublayer end: Relu(LayerNorm(x W + b + r)), x [rows, width], r [rows, hidden].</summary>
    internal static OnnxModel SublayerEnd(long rows, long width, long hidden, bool meanOutput = false, bool normIsOutput = false)
    {
        var g = new GraphBuilder("sublayer_end", 5);
        var x = g.Input("x", ElementType.Float, rows, width);
        var r = g.Input("r", ElementType.Float, rows, hidden);
        var product = g.Node("MatMul", [x, g.Weight("w", [width, hidden], 1 / MathF.Sqrt(width))]);
        // A bias whose level differs by block of 256 columns (-1, 1, 3, ...): each block's mean of a row differs from the
        // row's, so the statistics' combination across the cluster (the between-block term) shows in the output.
        var levels = Enumerable.Range(0, (int)hidden).Select(c => (2 * (c / 256)) - 1 + (0.25f * MathF.Sin(c))).ToArray();
        var sum = g.Node("Add", [g.Node("Add", [product, g.Initializer("b", [hidden], levels)]), r]);
        var scale = g.Uniform("gamma", [hidden], 0.5f, 1.5f);
        var shift = g.Weight("beta", [hidden], 0.2f);
        string norm;
        if (meanOutput)
        {
            var outs = g.NodeN("LayerNormalization", [sum, scale, shift], 2, GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-12f));
            norm = outs[0];
            g.Output(g.Rename(outs[1], "mean"), ElementType.Float, rows, 1);
        }
        else
        {
            norm = g.Node("LayerNormalization", [sum, scale, shift], GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-12f));
        }

        g.Output(g.Rename(normIsOutput ? norm : g.Node("Relu", [norm]), "y"), ElementType.Float, rows, hidden);
        return g.Build("sublayer_end", 17);
    }

    private static ExecutionPlan Compile(OnnxModel model, bool own, int computeCapability = 90, int multiprocessors = 2, Precision precision = Precision.Fp16) =>
        new NoGpuTarget(precision, hostMatmuls: true) { LayerNormProductOwn = own, ComputeCapability = computeCapability, Multiprocessors = multiprocessors }
            .Compile(model, MatmulEpiloguePlanTests.Inputs(model, 11));

    private static List<KernelStep> Fused(ExecutionPlan plan) => [.. plan.Steps.OfType<KernelStep>().Where(k => k.Node.Contains("+ residual + LayerNorm", StringComparison.Ordinal))];

    [Fact]
    public void The_switch_reads_own_or_library_is_off_by_default_and_refuses_anything_else_in_one_line()
    {
        Assert.False(GraphCompiler.LayerNormProductFrom(null));
        Assert.False(GraphCompiler.LayerNormProductFrom(" Library "));
        Assert.True(GraphCompiler.LayerNormProductFrom("own"));
        var e = Assert.Throws<BatchwiseException>(() => GraphCompiler.LayerNormProductFrom("fused"));
        Assert.Contains("BATCHWISE_LAYERNORM_PRODUCT 'fused' is not own or library", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(768L, true)]
    [InlineData(2048L, true)]
    [InlineData(1536L, true)] // eight of 192 (six of 256)
    [InlineData(2304L, false)] // nine of 256, twelve of 192: more than a portable cluster
    [InlineData(384L, true)] // two of 192
    [InlineData(320L, false)] // neither 256s nor 192s
    public void Takes_rows_of_up_to_eight_tiles_of_256_or_192(long n, bool takes) => Assert.Equal(takes, KernelSource.HalfGemmLayerNormTakes(8192, n, 768));

    [Theory]
    [InlineData(8192L, 768L, 132, 192)] // BERT b=64 on an H100: 192 blocks of 256 are two waves, the second half empty; 256 of 192 two full ones
    [InlineData(8192L, 768L, 192, 256)] // 192 SMs: one wave of 256-wide blocks
    [InlineData(8192L, 1024L, 132, 256)] // 1,024 columns: no 192s
    [InlineData(200L, 768L, 2, 256)] // 6 blocks of 256 (3 waves) against 8 of 192 (4): a tie of waves x width, the wider
    [InlineData(200L, 768L, 5, 192)] // 6 of 256 are 2 waves of 5 SMs, 8 of 192 also 2
    public void The_tile_width_is_the_one_with_the_least_waves_times_width(long m, long n, int multiprocessors, int columns) =>
        Assert.Equal(columns, KernelSource.HalfGemmLayerNormColumns(m, n, multiprocessors));

    [Fact]
    public void The_product_residual_and_layernorm_become_one_cluster_kernel_only_where_asked_and_on_sm_90()
    {
        var model = SublayerEnd(200, 128, 768);
        var step = Assert.Single(Fused(Compile(model, own: true)));
        Assert.Equal(6u, step.Grid); // two row tiles (200 rows) of three blocks, each cluster a row tile
        Assert.Equal(KernelSource.HalfGemmLayerNormSharedBytes(256), step.SharedBytes);
        Assert.Contains("__cluster_dims__(3, 1, 1)", step.Source, StringComparison.Ordinal);
        Assert.Equal([new HalfTensorMap(1, 200, 128, 128, 64), new HalfTensorMap(2, 768, 128, 128, 64)], step.TensorMaps);
        Assert.DoesNotContain(Compile(model, own: true).Steps, s => s.Node.StartsWith("LayerNormalization", StringComparison.Ordinal));

        var narrow = Assert.Single(Fused(Compile(model, own: true, multiprocessors: 5)));
        Assert.Equal(8u, narrow.Grid); // two row tiles of four 192-column blocks
        Assert.Contains("__cluster_dims__(4, 1, 1)", narrow.Source, StringComparison.Ordinal);
        Assert.Contains("bw_wgmma_64n192k16_f16(d,", narrow.Source, StringComparison.Ordinal);
        Assert.Equal(KernelSource.HalfGemmLayerNormSharedBytes(192), narrow.SharedBytes);
        Assert.Equal(new HalfTensorMap(2, 768, 128, 96, 64), narrow.TensorMaps[1]);

        Assert.Empty(Fused(Compile(model, own: false)));
        Assert.Empty(Fused(Compile(model, own: true, computeCapability: 89)));
        Assert.Empty(Fused(Compile(model, own: true, precision: Precision.Fp32)));
        Assert.Empty(Fused(Compile(model, own: true, multiprocessors: 7))); // six blocks would leave a multiprocessor idle
        Assert.Empty(Fused(Compile(SublayerEnd(200, 128, 768, meanOutput: true), own: true))); // the mean is wanted too
        Assert.Empty(Fused(Compile(SublayerEnd(200, 128, 768, normIsOutput: true), own: true))); // a graph output: the LayerNorm kernel writes it
    }

    [Theory]
    [InlineData(200L, 128L, 768L, 1, 256)] // three blocks a row; the second row tile 72 rows; K in two steps
    [InlineData(200L, 128L, 768L, 5, 192)] // four blocks of 192 a row
    [InlineData(130L, 320L, 512L, 1, 256)] // two blocks a row; K in five steps (the ring reused within the tile)
    [InlineData(128L, 64L, 256L, 1, 256)] // one block a row (a cluster of one); K in one step
    [InlineData(128L, 64L, 384L, 1, 192)] // two blocks of 192 (384 has no 256s)
    public void Own_product_with_residual_and_layernorm_matches_onnx_runtime(long rows, long width, long hidden, int multiprocessors, int columns)
    {
        CpuKernelRunner.Require();
        var model = SublayerEnd(rows, width, hidden);
        var inputs = MatmulEpiloguePlanTests.Inputs(model, 11);
        var plan = Compile(model, own: true, multiprocessors: multiprocessors);
        Assert.Contains($"bw_wgmma_64n{columns}k16_f16(d,", Assert.Single(Fused(plan)).Source, StringComparison.Ordinal);

        var expected = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs]);
        var difference = OperatorCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, 2e-2);
        Assert.True(difference is null, difference);
    }
}
