using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own split-K convolution kernel (tensor cores through the emulated mma/ldmatrix/cp.async; a tile's splits one
/// thread-block cluster, emulated as a pass of products then a pass of reductions), planned without a GPU in half precision for a device of 8 SMs (so small layers split)
/// and run on the CPU with g++ (<see cref="CpuKernelRunner"/>), against ONNX Runtime in float32. A plan that fell back
/// to cuDNN would fail to plan here (no library), so each case also shows the own kernel was chosen.
/// </summary>
public sealed class SplitKConvOnCpuTests
{
    private const int Sms = 8;

    /// <summary>Dense convolutions (one group): uneven splits, stride 2, a partial last pixel tile, every epilogue, dilation with asymmetric pads.</summary>
    private static readonly Dictionary<string, GroupedConvCase> Small = new(StringComparer.Ordinal)
    {
        ["c64-7x7-relu-4-uneven-splits"] = new(1, 64, 7, 7, 1),
        ["c32-k128-s2-bn-relu-2-images"] = new(2, 32, 9, 11, 1, OutChannels: 128, Stride: 2, After: "bn-relu"),
        ["c64-8x8-residual-relu"] = new(1, 64, 8, 8, 1, After: "residual-relu"),
        ["c32-k64-bias-only"] = new(1, 32, 5, 6, 1, OutChannels: 64, After: "none"),
        ["c32-k64-silu"] = new(1, 32, 6, 5, 1, OutChannels: 64, After: "silu"),
        ["c32-k64-dilation2-asymmetric"] = new(1, 32, 10, 7, 1, OutChannels: 64, Pads: [2, 1, 1, 2], Dilation: 2),
        ["c32-k64-10x10-two-pixel-tiles"] = new(1, 32, 10, 10, 1, OutChannels: 64),
        ["c256-k64-1x1-s2-all"] = new(1, 256, 9, 9, 1, OutChannels: 64, Stride: 2, Pads: [0, 0, 0, 0], Kernel: 1, After: "none"),
        ["c64-k64-1x1-residual-unsplit-every"] = new(1, 64, 8, 8, 1, OutChannels: 64, Pads: [0, 0, 0, 0], Kernel: 1, After: "residual-relu"),
        ["c32-k64-3x3-seven-tiles-unsplit-every"] = new(1, 32, 20, 20, 1, OutChannels: 64),
    };

    private static readonly Lazy<Dictionary<string, OwnKernelCase>> All = new(() => OwnKernelCase.PrepareAll(Small, (_, c) => (c.Model(), c.Inputs(11)),
        (name, model, inputs) => Plan(model, inputs, name.EndsWith("-all", StringComparison.Ordinal) ? SplitKConvChoice.All : name.EndsWith("-every", StringComparison.Ordinal) ? SplitKConvChoice.Every : SplitKConvChoice.Auto)));

    public static TheoryData<string> Cases => [.. Small.Keys];

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, SplitKConvChoice choice = SplitKConvChoice.Auto, int sms = Sms) =>
        new NoGpuTarget(Precision.Fp16) { SplitKConvolutions = choice, Multiprocessors = sms }.Compile(model, inputs);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Split_k_conv_kernel_runs_on_the_cpu_and_agrees_with_onnx_runtime(string name)
    {
        All.Value[name].RunsOnTheCpuAndAgrees(name, "own split-K kernel");
    }

    /// <summary>
    /// A residual block with a projection shortcut, float32, as torchvision's ResNet (v1.5) writes it: a = Relu(BN(Conv
    /// 3x3 x, stride s, pad 1, c -> m)); e = BN(Conv 1x1 a, m -> k); p = BN(Conv 1x1 x, stride s, c -> k); y = Relu(e + p).
    /// </summary>
    private static OnnxModel ProjectionBlock(int n, int c, int m, int k, int h, int stride, bool shortcutLast = false)
    {
        var rng = new Random(21);
        var g = new GraphBuilder("projection-block");
        var x = g.Input("x", ElementType.Float, (long)n, (long)c, (long)h, (long)h);
        float[] Random(int count, double scale) => [.. Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() - 0.5) * scale))];
        string ConvBn(string input, int cin, int cout, int size, int s, string prefix)
        {
            var w = g.Initializer(prefix + "w", [cout, cin, size, size], Random(cout * cin * size * size, 2.0 / Math.Sqrt(cin * size * size)));
            var conv = g.Node("Conv", [input, w], GraphBuilder.Attr("kernel_shape", size, size), GraphBuilder.Attr("strides", s, s), GraphBuilder.Attr("pads", size / 2, size / 2, size / 2, size / 2));
            var (gamma, beta) = (g.Initializer(prefix + "g", [cout], [.. Random(cout, 0.5).Select(v => v + 1f)]), g.Initializer(prefix + "be", [cout], Random(cout, 0.2)));
            var (mean, variance) = (g.Initializer(prefix + "mu", [cout], Random(cout, 0.1)), g.Initializer(prefix + "var", [cout], [.. Random(cout, 0.2).Select(v => v + 1f)]));
            return g.Node("BatchNormalization", [conv, gamma, beta, mean, variance]);
        }

        var shortcut = shortcutLast ? null : ConvBn(x, c, k, 1, stride, "p");
        var a = g.Node("Relu", [ConvBn(x, c, m, 3, stride, "a")]);
        var e = ConvBn(a, m, k, 1, 1, "e");
        shortcut ??= ConvBn(x, c, k, 1, stride, "p");
        g.Rename(g.Node("Relu", [g.Node("Add", [e, shortcut])]), "y");
        var o = ((h - 1) / stride) + 1;
        g.Output("y", ElementType.Float, (long)n, (long)k, (long)o, (long)o);
        return g.Build("projection-block");
    }

    [Theory]
    [InlineData(1, 64, 64, 256, 8, 1, 1)] // ResNet-50's first block at b=1 (on 8 SMs): both unsplit, 2 + 2 steps
    [InlineData(2, 64, 64, 128, 9, 2, 1)] // a stride-2 shortcut over an odd input (every second pixel of 9), two images
    [InlineData(2, 1024, 64, 64, 4, 2, 7)] // 2 + 32 steps, 5 a split: a cluster of 7, the shortcut's steps from the first split's third on
    [InlineData(2, 64, 64, 128, 9, 2, 1, true)] // the shortcut planned last: the block's 1x1 set aside, the strided shortcut's kernel computes both
    public void A_projection_shortcut_computed_in_its_block_ends_split_k_kernel_agrees_with_onnx_runtime(int n, int c, int m, int k, int h, int stride, int splits, bool shortcutLast = false)
    {
        CpuKernelRunner.Require();
        var model = ProjectionBlock(n, c, m, k, h, stride, shortcutLast);
        var rng = new Random(5);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [n, c, h, h], [.. Enumerable.Range(0, n * c * h * h).Select(_ => (float)(rng.NextDouble() * 2 - 1))])];
        ExecutionPlan Build(bool projections) => new NoGpuTarget(Precision.Fp16) { SplitKConvolutions = SplitKConvChoice.Every, SplitKProjections = projections, Multiprocessors = Sms }.Compile(model, inputs);
        var (apart, inside) = (Build(false), Build(true));
        var nodes = string.Join(" // ", inside.Steps.Select(s => s.Node));
        Assert.Equal(apart.Steps.Count - 1, inside.Steps.Count);
        var fused = Assert.Single(inside.Steps, s => s.Node.Contains("its projection shortcut computed in it", StringComparison.Ordinal));
        Assert.Contains(splits > 1 ? $"{splits} splits" : "unsplit", fused.Node, StringComparison.Ordinal);
        Assert.DoesNotContain("set aside", nodes, StringComparison.Ordinal);

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        CpuKernelRunner.Prepare([apart, inside]);
        var got = CpuKernelRunner.Run(inside, inputs);
        Assert.True(KernelCaseModels.Difference(got, expected, half: true) is null, $"{KernelCaseModels.Difference(got, expected, half: true)}: {nodes}");
        Assert.True(KernelCaseModels.Difference(CpuKernelRunner.Run(apart, inputs), expected, half: true) is null, "the plan without the fusion");
        Assert.True(expected[0].ToDoubles().Count(v => v > 0) > expected[0].ToDoubles().Length / 4, "the ReLU leaves too few outputs: the case checks little");
    }

    [Fact]
    public void Resnet50_at_batch_1_computes_all_four_projection_shortcuts_in_their_block_ends()
    {
        // The first block's shortcut is planned before the block's last convolution, the three strided ones after it
        // (that convolution is set aside and the shortcut's kernel computes both): four kernels fewer either way. (The
        // plan runs on the CPU against ONNX Runtime too, in about five minutes: the block cases above run both orders.)
        var model = ModelZoo.Build("zoo:resnet50?size=64");
        var rng = new Random(8);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [1, 3, 64, 64], [.. Enumerable.Range(0, 3 * 64 * 64).Select(_ => (float)(rng.NextDouble() * 2 - 1))])];
        ExecutionPlan Build(bool projections) => new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { StemPools = StemPoolChoice.Auto, SplitKConvolutions = SplitKConvChoice.Every, SplitKProjections = projections }.Compile(model, inputs);
        var (apart, inside) = (Build(false), Build(true));
        var nodes = string.Join(" // ", inside.Steps.Select(s => s.Node));
        Assert.Equal(apart.Steps.Count - 4, inside.Steps.Count);
        Assert.True(inside.Steps.Count(s => s.Node.Contains("its projection shortcut computed in it", StringComparison.Ordinal)) == 4, nodes);
        Assert.True(inside.Steps.Count(s => s.Node.Contains("its projection shortcut computed in it", StringComparison.Ordinal) && s.Node.Contains("unsplit", StringComparison.Ordinal)) >= 1, nodes);

    }

    [Fact]
    public void The_convolution_workspace_limit_reads_megabytes_and_refuses_others()
    {
        Assert.Equal(2048L << 20, GraphCompiler.ParseConvWorkspace(null));
        Assert.Equal(256L << 20, GraphCompiler.ParseConvWorkspace("256"));
        Assert.Equal(2048L << 20, GraphCompiler.ParseConvWorkspace("2048"));
        Assert.Contains("BATCHWISE_CONV_WORKSPACE_MB '32' is not a whole number from 64 to 16384", Assert.Throws<BatchwiseException>(() => GraphCompiler.ParseConvWorkspace("32")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_split_k_projection_switch_reads_on_and_off_and_refuses_others()
    {
        Assert.False(GraphCompiler.ParseSplitKProjection(null));
        Assert.True(GraphCompiler.ParseSplitKProjection(" on"));
        Assert.Contains("BATCHWISE_SPLITK_PROJECTION 'yes' is not on or off", Assert.Throws<BatchwiseException>(() => GraphCompiler.ParseSplitKProjection("yes")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Splits_fill_the_device_for_resnet50_layers_at_batch_1_and_are_left_out_where_tiles_fill_it()
    {
        // ResNet-50 at b=1, 132 SMs: layer4 3x3 (7x7, 512 -> 512; 8 splits, a portable cluster's most), layer3 (14x14,
        // 256), layer2 (28x28, 128), layer1 (56x56, 64).
        Assert.Equal((8, 18), KernelSource.SplitKConvSplits(49, 512, 9 * 16, 132));
        Assert.Equal((8, 9), KernelSource.SplitKConvSplits(196, 256, 9 * 8, 132));
        Assert.Equal((5, 8), KernelSource.SplitKConvSplits(784, 128, 9 * 4, 132));
        Assert.Equal((2, 9), KernelSource.SplitKConvSplits(3136, 64, 9 * 2, 132));

        // The default shape takes only the layers of at most 16 tiles (8 splits each): layer3 and layer4 at b=1.
        Assert.Equal((8, 9), KernelSource.SplitKConvSplits(196, 256, 9 * 8, 132, SplitKShape.Default.MostSplits, SplitKShape.Default.FewestSplits));
        Assert.Null(KernelSource.SplitKConvSplits(784, 128, 9 * 4, 132, SplitKShape.Default.MostSplits, SplitKShape.Default.FewestSplits));

        // Layer3 at b=8: 100 tiles already fill most of the device; a reduction of 7 steps is too short to share.
        Assert.Null(KernelSource.SplitKConvSplits(1568, 256, 9 * 8, 132));
        Assert.Null(KernelSource.SplitKConvSplits(49, 512, 7, 132));

        // Every split has work: 18 steps over at most 4 splits of 5 leave the last with 3.
        Assert.Equal((4, 5), KernelSource.SplitKConvSplits(49, 64, 18, 8));
    }

    [Fact]
    public void Off_or_a_grid_that_fills_the_device_leaves_the_convolution_to_cudnn()
    {
        var c = Small["c64-7x7-relu-4-uneven-splits"];
        static void GoesToCudnn(Func<ExecutionPlan> plan)
        {
            var e = Assert.ThrowsAny<Exception>(plan).ToString();
            Assert.True(e.Contains(NoGpuTarget.NoLibraries, StringComparison.Ordinal) || e.Contains("cudnn", StringComparison.OrdinalIgnoreCase), e);
        }

        GoesToCudnn(() => Plan(c.Model(), c.Inputs(11), SplitKConvChoice.Off));
        GoesToCudnn(() => Plan(c.Model(), c.Inputs(11), sms: 1));

        // A 1x1 convolution stays a GEMM under auto (planned here without cuBLASLt, it throws the same way).
        var pointwise = Small["c256-k64-1x1-s2-all"];
        GoesToCudnn(() => Plan(pointwise.Model(), pointwise.Inputs(11)));
    }

    [Fact]
    public void Every_runs_unsplit_what_a_split_does_not_pay_for_up_to_two_waves()
    {
        var c = Small["c32-k64-3x3-seven-tiles-unsplit-every"]; // 7 tiles: on 8 SMs a split does not pay
        var plan = Plan(c.Model(), c.Inputs(11), SplitKConvChoice.Every);
        var conv = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.Contains("own split-K kernel, unsplit", StringComparison.Ordinal)));
        Assert.Equal(1, KernelSource.ClusterSize(conv.Source));
        Assert.Equal(7u, conv.Grid);

        // On 3 SMs, 7 tiles are more than two waves: left to cuDNN (planned here without it, it throws).
        var e = Assert.ThrowsAny<Exception>(() => Plan(c.Model(), c.Inputs(11), SplitKConvChoice.Every, sms: 3)).ToString();
        Assert.True(e.Contains(NoGpuTarget.NoLibraries, StringComparison.Ordinal) || e.Contains("cudnn", StringComparison.OrdinalIgnoreCase), e);
    }

    /// <summary>Three splits (an odd cluster: rows 0, 3, 6... for rank 0, 64 rows not a multiple of 3) agree with ONNX Runtime.</summary>
    [Fact]
    public void An_odd_number_of_splits_reduces_every_row_once()
    {
        CpuKernelRunner.Require();
        var c = Small["c64-8x8-residual-relu"];
        var (model, inputs) = (c.Model(), c.Inputs(11));
        var plan = Plan(model, inputs, sms: 3);
        var conv = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.Contains("own split-K kernel, 3 splits", StringComparison.Ordinal)));
        Assert.Equal(3, KernelSource.ClusterSize(conv.Source));
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        CpuKernelRunner.Prepare([plan]);
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), ort.Run(inputs), half: true);
        Assert.True(difference is null, difference);
    }

    [Fact]
    public void Stages_cover_a_split_and_sixteen_splits_are_a_non_portable_cluster()
    {
        Assert.Equal(10, KernelSource.SplitKConvStages(9, 16));
        Assert.Equal(8, KernelSource.SplitKConvStages(9));
        Assert.Equal(2, KernelSource.SplitKConvStages(1));
        Assert.Equal((16, 9), KernelSource.SplitKConvSplits(49, 512, 144, 132, most: 16));
        Assert.Null(KernelSource.SplitKConvSplits(784, 128, 36, 132, fewest: 8));
        var code = KernelSource.SplitKConv(512, [3, 3], [1, 1], [1, 1], new(null, true, false), 1, 512, [7, 7], [7, 7], [1, 1], 16, 9, 10);
        Assert.Equal(16, KernelSource.ClusterSize(code.Source));
        Assert.True(code.SharedBytes > 48 * 1024, $"{code.SharedBytes} bytes");
        Assert.Equal(1, KernelSource.ClusterSize("extern \"C\" __global__ void k()"));
    }

    /// <summary>Two split-K convolutions in a row (2 and 4 splits): each a cluster kernel of its splits, the pair agrees with ONNX Runtime.</summary>
    [Fact]
    public void Split_k_convolutions_in_a_row_are_cluster_kernels_and_agree_with_onnx_runtime()
    {
        CpuKernelRunner.Require();
        var g = new GraphBuilder("two-convs", seed: 3);
        var x = g.Input("x", ElementType.Float, 1, 32, 6, 6);
        var y = g.Node("Relu", [g.Node("Conv", [x, g.Weight("w1", [64, 32, 3, 3], 0.3f), g.Weight("b1", [64], 0.3f)], GraphBuilder.Attr("kernel_shape", 3, 3), GraphBuilder.Attr("pads", 1, 1, 1, 1))]);
        y = g.Node("Relu", [g.Node("Conv", [y, g.Weight("w2", [64, 64, 3, 3], 0.2f), g.Weight("b2", [64], 0.3f)], GraphBuilder.Attr("kernel_shape", 3, 3), GraphBuilder.Attr("pads", 1, 1, 1, 1))]);
        g.Output(g.Rename(y, "y"), ElementType.Float, 1, 64, 6, 6);
        var model = g.Build("two-convs");
        var inputs = new GroupedConvCase(1, 32, 6, 6, 1).Inputs(5);
        var plan = Plan(model, inputs);
        var convs = plan.Steps.OfType<KernelStep>().Where(s => s.Node.Contains("own split-K kernel", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, convs.Count);
        Assert.Contains("__cluster_dims__(2, 1, 1)", convs[0].Source, StringComparison.Ordinal);
        Assert.Contains("__cluster_dims__(4, 1, 1)", convs[1].Source, StringComparison.Ordinal);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        CpuKernelRunner.Prepare([plan]);
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), ort.Run(inputs), half: true);
        Assert.True(difference is null, difference);
    }
}
