using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Convolutions over fewer than 8 channels (a stem) through the own tensor-core kernel (BATCHWISE_STEM_CONV=own): the
/// input and filter padded to 8 channels, one group, the filter in dynamic shared memory where a block needs more than
/// 48 KB, planned without a GPU in half precision and run on the CPU with g++ (<see cref="CpuKernelRunner"/>: emulated
/// mma/ldmatrix/cp.async, the launch's dynamic shared memory guarded) against ONNX Runtime in float32.
/// </summary>
public sealed class OwnStemConvOnCpuTests
{
    private static readonly long[] Seven = [7, 7];
    private static readonly long[] Two = [2, 2];
    private static readonly long[] One = [1, 1];

    internal static IReadOnlyDictionary<string, GroupedConvCase> Small { get; } = new Dictionary<string, GroupedConvCase>(StringComparer.Ordinal)
    {
        // ResNet's stem at small images: 16 output rows (two m16 tiles a warp), and an odd size (one m16 tile, edge tiles).
        ["7x7-s2-p3-64-32x40-bn-relu"] = new(2, 3, 32, 40, 1, OutChannels: 64, Stride: 2, Pads: [3, 3, 3, 3], Kernel: 7, After: "bn-relu"),
        ["7x7-s2-p3-64-37x45-bn-relu"] = new(2, 3, 37, 45, 1, OutChannels: 64, Stride: 2, Pads: [3, 3, 3, 3], Kernel: 7, After: "bn-relu"),

        // A smaller filter that fits static shared memory, no ReLU: the bias goes to the elementwise chain after it.
        ["5x5-s1-p2-24-bias"] = new(1, 4, 15, 13, 1, OutChannels: 24, Stride: 1, Pads: [2, 2, 2, 2], Kernel: 5, After: "none"),
    };

    public static TheoryData<string> Cases => [.. Small.Keys];

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, StemConvChoice choice, int maxShared = 227 * 1024) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { StemConvolutions = choice, MaxSharedBytesPerBlock = maxShared, PlansConvolutionsWithoutLibrary = true }.Compile(model, inputs);

    private static KernelStep OwnConv(ExecutionPlan plan) =>
        Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.Contains("own conv kernel", StringComparison.Ordinal)));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Own_stem_kernel_runs_on_the_cpu_and_agrees_with_onnx_runtime(string name)
    {
        var c = Small[name];
        var (plan, difference) = StemConvOnCpuTests.RunAgainstOnnxRuntime(c, (model, inputs) => Plan(model, inputs, StemConvChoice.Own));
        var conv = OwnConv(plan);
        Assert.Equal(c.After == "bn-relu", conv.Source.Contains("fmaxf(v0, 0.f)", StringComparison.Ordinal));

        // The 7x7 filter over 8 channels for 64 outputs (64 x 408 halves, 51 KB) needs dynamic shared memory; the 5x5 does not.
        Assert.Equal(c.Kernel == 7, conv.SharedBytes > 48 * 1024);
        Assert.Equal(conv.SharedBytes > 0, conv.Source.Contains("extern __shared__", StringComparison.Ordinal));
        Assert.Equal(c.Stride == 2, conv.Source.Contains("(q & 1)", StringComparison.Ordinal)); // columns by parity at stride 2
        Assert.True(difference is null, $"{name}: {difference}");
    }

    [Fact]
    public void Resnet_stem_geometry_takes_64_kb_of_dynamic_shared_memory_and_nothing_fits_48_kb()
    {
        // 224 x 224 -> 112 x 112: 16 output rows a block; the input tile 37 x 21 pixels of 8 channels (12,432 bytes; 37 x 22
        // with its columns by parity, 13,024) and the filter 64 x (400 + 8) halves (52,224 bytes).
        Assert.Null(KernelSource.GroupedConvTilesPerWarp(8, 64, Seven, Two, One, 112));
        Assert.Equal(2, KernelSource.GroupedConvTilesPerWarp(8, 64, Seven, Two, One, 112, 227 * 1024));
        Assert.Equal(2, KernelSource.GroupedConvTilesPerWarp(8, 64, Seven, Two, One, 112, 227 * 1024, byParity: true));
        Assert.Null(KernelSource.GroupedConvTilesPerWarp(8, 64, Seven, One, One, 112, 227 * 1024, byParity: true)); // stride 1: no parity
        var epilogue = new GroupedConvEpilogue(ElementType.Float16, true, false);
        var plain = KernelSource.GroupedConv(8, 64, Seven, Two, One, 2, epilogue, 256, 1, [224, 224], [112, 112], [3, 3]);
        var byParity = KernelSource.GroupedConv(8, 64, Seven, Two, One, 2, epilogue, 256, 1, [224, 224], [112, 112], [3, 3], byParity: true);
        Assert.Equal(12_432 + 52_224, plain.SharedBytes);
        Assert.Equal(13_024 + 52_224, byParity.SharedBytes);
        Assert.Contains("extern __shared__ __align__(16) unsigned short bw_dynamic_shared[];", byParity.Source, StringComparison.Ordinal);
        Assert.Contains("(q & 1) * 11", byParity.Source, StringComparison.Ordinal);
        Assert.DoesNotContain("(q & 1)", plain.Source, StringComparison.Ordinal);
        Assert.Equal(256L * 7 * 14 * KernelSource.GroupedConvBlock, KernelSource.GroupedConvThreads(256, 1, [112, 112], 2));
    }

    [Fact]
    public void A_device_that_cannot_give_the_block_its_shared_memory_leaves_the_stem_to_cudnn()
    {
        var c = Small["7x7-s2-p3-64-37x45-bn-relu"];
        var plan = Plan(c.Model(), c.Inputs(9), StemConvChoice.Own, maxShared: 48 * 1024);
        Assert.DoesNotContain(plan.Steps, s => s.Node.Contains("own conv kernel", StringComparison.Ordinal));
        Assert.Single(plan.Steps, s => s is ConvProblemStep);
    }

    [Fact]
    public void Stem_conv_own_routes_resnet50s_stem_to_the_own_kernel_and_cudnn_does_not()
    {
        var model = ModelZoo.Build("zoo:resnet50");
        var inputs = model.Inputs.Select(i => Gpu.Gpu.RandomInput(i, 1)).ToList();
        var first = model.Graph.Node.First(n => n.OpType == "Conv");
        var stem = string.IsNullOrEmpty(first.Name) ? $"Conv (output '{first.Output[0]}')" : $"Conv '{first.Name}'";

        var own = Plan(model, inputs, StemConvChoice.Own);
        var conv = OwnConv(own);
        Assert.StartsWith(stem, conv.Node, StringComparison.Ordinal);
        Assert.Contains("fmaxf(v0, 0.f)", conv.Source, StringComparison.Ordinal); // BatchNormalization's bias and the ReLU fused
        Assert.Equal(13_024 + 52_224, conv.SharedBytes); // the input tile's columns by parity (stride 2)
        Assert.DoesNotContain(own.Steps, s => s is ConvProblemStep && s.Node.StartsWith(stem, StringComparison.Ordinal));

        var byCudnn = Plan(model, inputs, StemConvChoice.Cudnn);
        Assert.DoesNotContain(byCudnn.Steps, s => s.Node.Contains("own conv kernel", StringComparison.Ordinal));
        var cudnn = Assert.IsType<ConvProblemStep>(byCudnn.Steps.First(s => s.Node.StartsWith(stem, StringComparison.Ordinal)));
        Assert.Equal(8L, cudnn.Problem.X[1]); // cuDNN over the input padded to 8 channels
        Assert.Equal(own.Steps.Count(s => s is ConvProblemStep) + 1, byCudnn.Steps.Count(s => s is ConvProblemStep));
    }
}
