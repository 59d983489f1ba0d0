using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own grouped convolution kernel (tensor cores through the emulated mma/ldmatrix/cp.async), planned without a GPU in
/// half precision and run on the CPU with g++ (<see cref="CpuKernelRunner"/>), against ONNX Runtime in float32. A plan
/// that fell back to cuDNN would fail to plan here (no library), so each case also shows the own kernel was chosen.
/// </summary>
public sealed class GroupedConvOnCpuTests
{
    private static readonly Lazy<Dictionary<string, OwnKernelCase>> All = new(PrepareAll);

    public static TheoryData<string> Cases => [.. GroupedConvModels.Small.Keys];

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, GroupedConvChoice choice)
    {
        return new NoGpuTarget(Precision.Fp16) { GroupedConvolutions = choice }.Compile(model, inputs);
    }

    /// <summary>Plans every case (the own kernel forced: the default leaves power-of-two widths to cuDNN), then compiles all their kernels in one g++ run.</summary>
    private static Dictionary<string, OwnKernelCase> PrepareAll() =>
        OwnKernelCase.PrepareAll(GroupedConvModels.Small, (_, c) => (c.Model(), c.Inputs(7)), (_, model, inputs) => Plan(model, inputs, GroupedConvChoice.Own));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Grouped_conv_kernel_runs_on_the_cpu_and_agrees_with_onnx_runtime(string name)
    {
        All.Value[name].RunsOnTheCpuAndAgrees(name, "own grouped kernel");
    }

    [Fact]
    public void Bias_and_relu_are_the_kernels_epilogue()
    {
        var c = GroupedConvModels.Small["gw24-s2-odd-bn-relu"];
        var plan = Plan(c.Model(), c.Inputs(7), GroupedConvChoice.Auto);

        // The input's conversion to channels-last half, the convolution with BatchNormalization's bias and the ReLU in
        // it, the output's conversion back: nothing for the BatchNormalization or the ReLU.
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        Assert.True(plan.Steps.Count == 3, steps);
        var conv = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal)));
        Assert.Contains("fmaxf(v0, 0.f)", conv.Source, StringComparison.Ordinal);
        Assert.Contains("bias[gk + n]", conv.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_takes_the_own_kernel_for_group_width_24_and_leaves_powers_of_two_to_cudnn()
    {
        Assert.True(GraphCompiler.PrefersOwnGroupedConv(24, 24));
        Assert.True(GraphCompiler.PrefersOwnGroupedConv(24, 48));
        Assert.False(GraphCompiler.PrefersOwnGroupedConv(16, 16));
        Assert.False(GraphCompiler.PrefersOwnGroupedConv(32, 32));
        Assert.False(GraphCompiler.PrefersOwnGroupedConv(8, 8));
        Assert.False(GraphCompiler.PrefersOwnGroupedConv(72, 72));

        // Group width 16 under auto goes to cuDNN, which cannot be reached here (no library, or no GPU for its handle).
        static void GoesToCudnn(GroupedConvCase c, GroupedConvChoice choice)
        {
            var e = Assert.ThrowsAny<Exception>(() => Plan(c.Model(), c.Inputs(7), choice)).ToString();
            Assert.True(e.Contains(NoGpuTarget.NoLibraries, StringComparison.Ordinal) || e.Contains("cudnn", StringComparison.OrdinalIgnoreCase), e);
        }

        GoesToCudnn(GroupedConvModels.Small["gw16-s1-relu"], GroupedConvChoice.Auto);

        // Forced to cuDNN, width 24 goes there too; the own kernel takes it under auto.
        GoesToCudnn(GroupedConvModels.Small["gw24-s1-relu"], GroupedConvChoice.Cudnn);
        var r = GroupedConvModels.Small["gw24-s1-relu"];
        Assert.Single(Plan(r.Model(), r.Inputs(7), GroupedConvChoice.Auto).Steps, s => s.Node.Contains("own grouped kernel", StringComparison.Ordinal));
    }

    [Fact]
    public void Grouped_convs_that_fit_48_kb_keep_static_shared_memory()
    {
        foreach (var (name, c) in All.Value)
        {
            var conv = Assert.IsType<KernelStep>(Assert.Single(c.Plan.Steps, s => s.Node.Contains("own grouped kernel", StringComparison.Ordinal)));
            Assert.True(conv.SharedBytes == 0, $"{name}: {conv.SharedBytes} bytes of dynamic shared memory");
            Assert.DoesNotContain("extern __shared__", conv.Source, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// Group width 56 with a 3x3 window: the filter alone (56 x 512 halves) passes 48 KB. Forced, the own kernel takes it
    /// in dynamic shared memory and agrees with ONNX Runtime on the CPU; under auto it stays with cuDNN (not measured).
    /// </summary>
    [Fact]
    public void Group_width_56_takes_dynamic_shared_memory_when_forced_and_stays_with_cudnn_under_auto()
    {
        CpuKernelRunner.Require();
        var c = new GroupedConvCase(1, 112, 10, 10, 2, After: "relu");
        var model = c.Model();
        var inputs = c.Inputs(7);
        var plan = Plan(model, inputs, GroupedConvChoice.Own);
        var conv = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.Contains("own grouped kernel", StringComparison.Ordinal)));
        Assert.True(conv.SharedBytes > 48 * 1024, $"{conv.SharedBytes} bytes of dynamic shared memory");
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        CpuKernelRunner.Prepare([plan]);
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), ort.Run(inputs), half: true);
        Assert.True(difference is null, difference);

        var e = Assert.ThrowsAny<Exception>(() => Plan(model, inputs, GroupedConvChoice.Auto)).ToString();
        Assert.True(e.Contains(NoGpuTarget.NoLibraries, StringComparison.Ordinal) || e.Contains("cudnn", StringComparison.OrdinalIgnoreCase), e);
    }
}
