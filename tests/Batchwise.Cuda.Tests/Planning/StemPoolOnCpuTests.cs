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
    internal sealed record StemCase(long Batch, long Channels, long Height, long Width, long OutChannels, long Kernel, bool Bn, int Sms, long PoolKernel = 3)
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

    /// <summary>ResNet's stem small (one warp of columns, one pooled row a band), odd sizes over two and three warps with bands of several rows (and a band past the end), one channel with a 5x5 window (a k16 step a filter row).</summary>
    private static readonly Dictionary<string, StemCase> Small = new(StringComparer.Ordinal)
    {
        ["resnet-stem-bn-2-images"] = new(2, 3, 32, 32, 64, 7, Bn: true, Sms: 8),
        ["odd-37x45-k32-bias-bands-of-3"] = new(1, 3, 37, 45, 32, 7, Bn: false, Sms: 1),
        ["odd-23x70-k48-bn-3-warps"] = new(2, 3, 23, 70, 48, 7, Bn: true, Sms: 1),
        ["one-channel-5x5-k16"] = new(1, 1, 20, 20, 16, 5, Bn: false, Sms: 2),
    };

    private static readonly Lazy<Dictionary<string, OwnKernelCase>> All = new(() => OwnKernelCase.PrepareAll(Small, (_, c) => (c.Model(), c.Inputs(3)), (name, _, _) => Plan(Small[name])));

    public static TheoryData<string> Cases => [.. Small.Keys];

    private static ExecutionPlan Plan(StemCase c, StemPoolChoice choice = StemPoolChoice.Auto) =>
        new NoGpuTarget(Precision.Fp16) { StemPools = choice, Multiprocessors = c.Sms }.Compile(c.Model(), c.Inputs(3));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Stem_kernel_runs_on_the_cpu_and_agrees_with_onnx_runtime(string name)
    {
        var c = All.Value[name];
        var stem = c.RunsOnTheCpuAndAgrees(name, "own stem kernel");
        Assert.DoesNotContain(c.Plan.Steps, s => s.Node.StartsWith("input ", StringComparison.Ordinal));
        Assert.Contains("+ Relu + MaxPool", stem.Node, StringComparison.Ordinal);
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
