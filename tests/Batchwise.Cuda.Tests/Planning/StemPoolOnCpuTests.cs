using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A stem (input -> Conv [-> BatchNormalization] -> Relu -> MaxPool 3x3/2) in half precision: planned without a GPU as
/// one own kernel reading the float32 input as given (no entry kernel), run on the CPU with g++
/// (<see cref="CpuKernelRunner"/>: mma.sync, ldmatrix and cp.async emulated) against ONNX Runtime in float32.
/// </summary>
public sealed class StemPoolOnCpuTests
{
    /// <summary>A stem: <paramref name="Bn"/> a BatchNormalization after the convolution (else a bias), pads of half the window.</summary>
    internal sealed record StemCase(long Batch, long Channels, long Height, long Width, long OutChannels, long Kernel, bool Bn, int Sms, long PoolKernel = 3, int Splits = 1)
    {
        public long OutHeight => ((Height + (2 * (Kernel / 2)) - Kernel) / 2) + 1;

        public long OutWidth => ((Width + (2 * (Kernel / 2)) - Kernel) / 2) + 1;

        public OnnxModel Model()
        {
            var g = new GraphBuilder("stem", seed: 7);
            var x = g.Input("x", ElementType.Float, Batch, Channels, Height, Width);
            var w = g.Weight("w", [OutChannels, Channels, Kernel, Kernel], 0.3f);
            var p = Kernel / 2;
            var conv = g.Node("Conv", Bn ? [x, w] : [x, w, g.Weight("b", [OutChannels], 0.5f)], GraphBuilder.Attr("kernel_shape", Kernel, Kernel), GraphBuilder.Attr("strides", 2, 2), GraphBuilder.Attr("pads", p, p, p, p));
            if (Bn)
            {
                conv = g.Node("BatchNormalization", [conv, g.Uniform("gamma", [OutChannels], 0.5f, 1.5f), g.Weight("beta", [OutChannels], 0.5f), g.Weight("mean", [OutChannels], 0.2f), g.Uniform("var", [OutChannels], 0.5f, 1.5f)]);
            }

            var pad = PoolKernel == 3 ? 1 : 0;
            var y = g.Node("MaxPool", [g.Node("Relu", [conv])], GraphBuilder.Attr("kernel_shape", PoolKernel, PoolKernel), GraphBuilder.Attr("strides", 2, 2), GraphBuilder.Attr("pads", pad, pad, pad, pad));
            var (ph, pw) = (((OutHeight + (2 * pad) - PoolKernel) / 2) + 1, ((OutWidth + (2 * pad) - PoolKernel) / 2) + 1);
            g.Output(g.Rename(y, "y"), ElementType.Float, Batch, OutChannels, ph, pw);
            return g.Build("stem");
        }

        public List<Tensor> Inputs(int seed) => new GroupedConvCase(Batch, Channels, Height, Width, 1).Inputs(seed);
    }

    /// <summary>ResNet's stem small (one warp of columns, one pooled row a band), odd sizes over two and three warps with bands of several rows (and a band past the end), one channel with a 5x5 window (a k16 step a filter row); some with a band's channels split over 2 or 4 blocks.</summary>
    private static readonly Dictionary<string, StemCase> Small = new(StringComparer.Ordinal)
    {
        ["resnet-stem-bn-2-images"] = new(2, 3, 32, 32, 64, 7, Bn: true, Sms: 8),
        ["odd-37x45-k32-bias-bands-of-3"] = new(1, 3, 37, 45, 32, 7, Bn: false, Sms: 1),
        ["odd-23x70-k48-bn-3-warps"] = new(2, 3, 23, 70, 48, 7, Bn: true, Sms: 1),
        ["one-channel-5x5-k16"] = new(1, 1, 20, 20, 16, 5, Bn: false, Sms: 2),
        ["resnet-stem-bn-2-images-2-channel-splits"] = new(2, 3, 32, 32, 64, 7, Bn: true, Sms: 8, Splits: 2),
        ["resnet-stem-bn-1-image-4-channel-splits"] = new(1, 3, 32, 32, 64, 7, Bn: true, Sms: 8, Splits: 4),
        ["odd-37x45-k32-bias-bands-of-3-2-channel-splits"] = new(1, 3, 37, 45, 32, 7, Bn: false, Sms: 1, Splits: 2),
    };

    private static readonly Lazy<Dictionary<string, OwnKernelCase>> All = new(() => OwnKernelCase.PrepareAll(Small, (_, c) => (c.Model(), c.Inputs(3)), (name, _, _) => Plan(Small[name])));

    public static TheoryData<string> Cases => [.. Small.Keys];

    private static ExecutionPlan Plan(StemCase c, StemPoolChoice choice = StemPoolChoice.Auto) =>
        new NoGpuTarget(Precision.Fp16) { StemPools = choice, Multiprocessors = c.Sms, StemSplits = c.Splits }.Compile(c.Model(), c.Inputs(3));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Stem_kernel_runs_on_the_cpu_and_agrees_with_onnx_runtime(string name)
    {
        var c = All.Value[name];
        var stem = c.RunsOnTheCpuAndAgrees(name, "own stem kernel");
        Assert.DoesNotContain(c.Plan.Steps, s => s.Node.StartsWith("input ", StringComparison.Ordinal));
        Assert.Contains("+ Relu + MaxPool", stem.Node, StringComparison.Ordinal);
        var splits = Small[name].Splits;
        Assert.Equal(splits > 1, stem.Node.Contains($"x {splits} channel splits", StringComparison.Ordinal));
    }

    [Fact]
    public void Channel_splits_are_the_ones_asked_where_each_share_is_a_multiple_of_16_and_auto_fills_each_sm_once()
    {
        Assert.Equal(2, GraphCompiler.StemChannelSplits(2, 56, 64, 132));
        Assert.Equal(1, GraphCompiler.StemChannelSplits(2, 56, 48, 132)); // 24 a block: not a multiple of 16
        Assert.Equal(2, GraphCompiler.StemChannelSplits(0, 56, 64, 132)); // ResNet-50 at b=1: 112 blocks for 132 SMs (4 splits, 224, measured no faster)
        Assert.Equal(1, GraphCompiler.StemChannelSplits(0, 112, 64, 132)); // b=2
        Assert.Equal(4, GraphCompiler.StemChannelSplits(0, 28, 64, 132)); // half the bands: 112 blocks again
        Assert.Equal(1, GraphCompiler.StemChannelSplits(0, 540, 64, 132)); // b=64: the bands fill it already
        Assert.Equal(1, GraphCompiler.StemChannelSplits(1, 56, 64, 132));
    }

    [Fact]
    public void Bands_give_about_four_blocks_an_sm_and_never_more_than_a_pooled_row_each()
    {
        Assert.Equal(3, KernelSource.StemPoolBands(256, 56, 132)); // ResNet-50 at b=256 on an H200: 768 blocks
        Assert.Equal(9, KernelSource.StemPoolBands(64, 56, 132));
        Assert.Equal(56, KernelSource.StemPoolBands(1, 56, 132));
        Assert.Equal(1, KernelSource.StemPoolBands(1024, 56, 132));
        Assert.Equal(7, StemPattern.Warps(112));

        // ResNet's stem at 224 x 224 keeps two blocks an SM within sm_90's 228 KB.
        Assert.True(KernelSource.StemPoolSharedBytes(7, 7, 7, 64) <= 113 * 1024, $"{KernelSource.StemPoolSharedBytes(7, 7, 7, 64)} bytes");
        Assert.True(StemPattern.Fits(224, 3, 112, 7));
        Assert.False(StemPattern.Fits(512, 3, 256, 7));
    }

    [Fact]
    public void Off_or_a_stem_the_kernel_does_not_take_enters_the_input_and_runs_its_layers_one_by_one()
    {
        static void Unfused(ExecutionPlan plan)
        {
            Assert.DoesNotContain(plan.Steps, s => s.Node.Contains("own stem kernel", StringComparison.Ordinal));
            Assert.Contains(plan.Steps, s => s.Node.StartsWith("input ", StringComparison.Ordinal));
        }

        var resnet = Small["resnet-stem-bn-2-images"];
        ExecutionPlan Planned(StemCase c, StemPoolChoice choice) =>
            new NoGpuTarget(Precision.Fp16) { StemPools = choice, StemConvolutions = StemConvChoice.Own, Multiprocessors = c.Sms }.Compile(c.Model(), c.Inputs(3));
        Unfused(Planned(resnet, StemPoolChoice.Off));
        Unfused(Planned(resnet with { PoolKernel = 2 }, StemPoolChoice.Auto)); // a 2x2 pooling
        Unfused(Planned(resnet with { Channels = 5 }, StemPoolChoice.Auto)); // more channels than a pixel's four halves

        // A float32 plan computes in float32: its input needs no entry kernel, and the stem stays layer by layer.
        var fp32 = new NoGpuTarget(Precision.Fp32, hostMatmuls: true) { StemPools = StemPoolChoice.Auto, PlansConvolutionsWithoutLibrary = true }.Compile(resnet.Model(), resnet.Inputs(3));
        Assert.DoesNotContain(fp32.Steps, s => s.Node.Contains("own stem kernel", StringComparison.Ordinal));
        Assert.Contains(fp32.Steps, s => s.Node.StartsWith("MaxPool", StringComparison.Ordinal));
    }

    /// <summary>
    /// A QDQ stem: x float32 [2, 3, 32, 32] -> QuantizeLinear (0.02, zero 128) -> DequantizeLinear -> Conv 7x7/2 (int8
    /// filter per channel through DequantizeLinear, float bias) [-> Relu] -> QuantizeLinear (0.05, zero 0) ->
    /// DequantizeLinear -> MaxPool 3x3/2 -> QuantizeLinear (the pooled value's own scale and zero point) = y.
    /// </summary>
    private static OnnxModel QuantizedStem(bool relu, float poolScale, int poolZero, ElementType poolType)
    {
        var rng = new Random(11);
        var g = new GraphBuilder("qdq-stem");
        var x = g.Input("x", ElementType.Float, 2L, 3L, 32L, 32L);
        string Scalar(string name, float v) => g.Initializer(name, [], [v]);
        string Zero(string name, int v, ElementType type = ElementType.UInt8) =>
            type == ElementType.UInt8 ? g.Raw<byte>(name, type, [], [(byte)v]) : g.Raw<sbyte>(name, type, [], [(sbyte)v]);
        var (xs, xz) = (Scalar("xs", 0.02f), Zero("xz", 128));
        var wq = g.Raw<sbyte>("wq", ElementType.Int8, [64, 3, 7, 7], [.. Enumerable.Range(0, 64 * 3 * 49).Select(_ => (sbyte)rng.Next(-127, 128))]);
        var ws = g.Initializer("ws", [64], [.. Enumerable.Range(0, 64).Select(_ => (float)(0.001 + (rng.NextDouble() * 0.002)))]);
        var wd = g.Node("DequantizeLinear", [wq, ws, g.Raw<sbyte>("wz", ElementType.Int8, [64], new sbyte[64])], GraphBuilder.Attr("axis", 0L));
        var b = g.Initializer("b", [64], [.. Enumerable.Range(0, 64).Select(_ => (float)(rng.NextDouble() - 0.5))]);
        var xd = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [x, xs, xz]), xs, xz]);
        var conv = g.Node("Conv", [xd, wd, b], GraphBuilder.Attr("kernel_shape", 7, 7), GraphBuilder.Attr("strides", 2, 2), GraphBuilder.Attr("pads", 3, 3, 3, 3));
        var (cs, cz) = (Scalar("cs", 0.05f), Zero("cz", 0));
        var cd = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [relu ? g.Node("Relu", [conv]) : conv, cs, cz]), cs, cz]);
        var pool = g.Node("MaxPool", [cd], GraphBuilder.Attr("kernel_shape", 3, 3), GraphBuilder.Attr("strides", 2, 2), GraphBuilder.Attr("pads", 1, 1, 1, 1));
        g.Rename(g.Node("QuantizeLinear", [pool, Scalar("ps", poolScale), Zero("pz", poolZero, poolType)]), "y");
        g.Output("y", poolType, 2L, 64L, 8L, 8L);
        return g.Build("qdq-stem");
    }

    [Theory]
    [InlineData(false, 0.05f, 0, ElementType.UInt8)] // optimize --int8's form: the Relu dropped, the pooled value quantized as the convolution's
    [InlineData(true, 0.07f, 5, ElementType.UInt8)] // a Relu written out, a second rounding to another scale and zero point
    [InlineData(false, 0.04f, 0, ElementType.Int8)] // the pooled value int8 (stored as it is)
    [InlineData(true, 0.07f, 5, ElementType.UInt8, 2)] // a band's channels over two blocks
    public void A_qdq_stem_is_one_kernel_that_writes_int8_and_agrees_with_onnx_runtime(bool relu, float poolScale, int poolZero, ElementType poolType, int splits = 1)
    {
        CpuKernelRunner.Require();
        var model = QuantizedStem(relu, poolScale, poolZero, poolType);
        var rng = new Random(3);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [2, 3, 32, 32], [.. Enumerable.Range(0, 2 * 3 * 32 * 32).Select(_ => (float)((rng.NextDouble() * 5.2) - 2.6))])];
        var plan = new NoGpuTarget(Precision.Fp16) { Int8 = true, StemPools = StemPoolChoice.Auto, Multiprocessors = 8, StemSplits = splits }.Compile(model, inputs);
        var stem = Assert.Single(plan.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal));
        Assert.Equal(splits > 1, stem.Node.Contains("channel splits", StringComparison.Ordinal));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("input ", StringComparison.Ordinal) || s.Node.StartsWith("MaxPool", StringComparison.Ordinal) || s.Node.Contains("Quantize", StringComparison.Ordinal) && s != stem);
        Assert.Contains("own stem kernel", stem.Node, StringComparison.Ordinal);
        Assert.Contains("int8 out", stem.Node, StringComparison.Ordinal);

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0];
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0];
        int[] Values(Tensor t) => poolType == ElementType.UInt8 ? [.. t.AsSpan<byte>().ToArray().Select(v => (int)v)] : [.. t.AsSpan<sbyte>().ToArray().Select(v => (int)v)];
        var (w, o) = (Values(want), Values(got));
        Assert.Equal(w.Length, o.Length);
        var differ = Enumerable.Range(0, w.Length).Where(i => w[i] != o[i]).ToList();
        // A step of the convolution's rounding (fp16 sums against float ones) is 0.05 / poolScale steps of the pooled one.
        var steps = (int)Math.Ceiling((0.05 / poolScale) - 1e-6);
        Assert.True(differ.All(i => Math.Abs(w[i] - o[i]) <= steps), $"outputs more than {steps} steps off ONNX Runtime: {string.Join(", ", differ.Where(i => Math.Abs(w[i] - o[i]) > steps).Take(8).Select(i => $"{o[i]} for {w[i]} at {i}"))}");
        Assert.True(differ.Count <= 0.02 * w.Length, $"{differ.Count} of {w.Length} outputs a step off");
        Assert.True(w.Distinct().Count() > 20, "the reference output is nearly constant: the case checks nothing");
    }

    [Fact]
    public void A_qdq_stem_stays_layer_by_layer_when_the_int8_path_is_off_or_the_rounding_is_not_the_relu()
    {
        var model = QuantizedStem(false, 0.05f, 0, ElementType.UInt8);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [2, 3, 32, 32], new float[2 * 3 * 32 * 32])];
        var off = new NoGpuTarget(Precision.Fp16) { StemPools = StemPoolChoice.Auto, Multiprocessors = 8, PlansConvolutionsWithoutLibrary = true }.Compile(model, inputs);
        Assert.DoesNotContain(off.Steps, s => s.Node.Contains("own stem kernel", StringComparison.Ordinal));

        // An int8 rounding whose zero point is not its floor keeps negatives: without a Relu it is not the kernel's ReLU.
        var signed = QuantizedStem(false, 0.05f, 0, ElementType.Int8);
        foreach (var n in signed.Graph.Node.Where(n => n.OpType is "QuantizeLinear" or "DequantizeLinear" && n.Input.Count > 2 && n.Input[2] == "cz"))
        {
            n.Input[2] = "pz";
        }

        var kept = new NoGpuTarget(Precision.Fp16) { Int8 = true, StemPools = StemPoolChoice.Auto, Multiprocessors = 8, PlansConvolutionsWithoutLibrary = true }.Compile(signed, inputs);
        Assert.DoesNotContain(kept.Steps, s => s.Node.Contains("own stem kernel", StringComparison.Ordinal));
    }

    [Fact]
    public void Optimize_int8s_resnet18_plans_its_stem_as_one_kernel_whose_int8_output_the_next_convolutions_read()
    {
        // Up to the first residual block's output (the int8 classifier needs cuBLASLt to plan).
        var model = OnnxModel.FromProto(Int8PlanTests.QdqResnet18.Value.Proto.Clone(), "resnet18-int8-head");
        var add = model.Graph.Node.First(n => n.OpType == "Add");
        var blockEnd = model.Graph.Node.Single(n => n.OpType == "QuantizeLinear" && n.Input[0] == add.Output[0]).Output[0];
        model.Graph.Output.Clear();
        model.Graph.Output.Add(new global::Onnx.ValueInfoProto { Name = blockEnd, Type = new global::Onnx.TypeProto { TensorType = new global::Onnx.TypeProto.Types.Tensor { ElemType = (int)ElementType.UInt8 } } });
        new Transforms.DeadNodeRemoval().Apply(model);
        var inputs = new GroupedConvCase(2, 3, 32, 32, 1).Inputs(1);
        var plan = new NoGpuTarget(Precision.Fp16) { Int8 = true, Int8Convolutions = Int8ConvChoice.Own, StemPools = StemPoolChoice.Auto, Multiprocessors = 8 }.Compile(model, inputs);
        var stem = plan.Steps[0];
        Assert.Contains("own stem kernel from the float input rounded as its QuantizeLinear, int8 out", stem.Node, StringComparison.Ordinal);
        Assert.StartsWith("Conv", plan.Steps[1].Node, StringComparison.Ordinal);
        Assert.Contains("int8 (own kernel", plan.Steps[1].Node, StringComparison.Ordinal);
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("MaxPool", StringComparison.Ordinal) || s.Node.StartsWith("input ", StringComparison.Ordinal) || s.Node.StartsWith("QuantizeLinear", StringComparison.Ordinal));
    }

    [Fact]
    public void Resnet50s_stem_from_the_zoo_is_one_kernel()
    {
        var model = ModelZoo.Build("zoo:resnet50");
        var inputs = new GroupedConvCase(2, 3, 224, 224, 1).Inputs(1);
        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { StemPools = StemPoolChoice.Auto, PlansConvolutionsWithoutLibrary = true }.Compile(model, inputs);
        var stem = Assert.IsType<KernelStep>(plan.Steps.First(s => s is KernelStep));
        Assert.Contains("own stem kernel from the float input", stem.Node, StringComparison.Ordinal);
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("MaxPool", StringComparison.Ordinal) || s.Node.StartsWith("input ", StringComparison.Ordinal));
    }
}
