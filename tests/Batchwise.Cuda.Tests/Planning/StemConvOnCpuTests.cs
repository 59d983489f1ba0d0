using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Convolutions over fewer than 8 channels (a stem) planned as patches times the filter in one GEMM
/// (BATCHWISE_STEM_CONV=gemm) in half precision, run by the reference runner against ONNX Runtime in float32: the
/// patches kernel (strides, pads, dilation, zero columns up to a multiple of 8) and the GEMM's bias + ReLU epilogue.
/// </summary>
public sealed class StemConvOnCpuTests
{
    internal static IReadOnlyDictionary<string, GroupedConvCase> Small { get; } = new Dictionary<string, GroupedConvCase>(StringComparer.Ordinal)
    {
        ["7x7-s2-p3-bn-relu"] = new(2, 3, 17, 19, 1, OutChannels: 16, Stride: 2, Pads: [3, 3, 3, 3], Kernel: 7, After: "bn-relu"),
        ["3x3-s1-asymmetric-bias"] = new(1, 4, 9, 7, 1, OutChannels: 8, Pads: [1, 0, 0, 1], After: "none"),
        ["3x3-s2-dilation2-relu"] = new(1, 1, 12, 11, 1, OutChannels: 24, Stride: 2, Dilation: 2, Pads: [2, 2, 2, 2], After: "relu"),
    };

    public static TheoryData<string> Cases => [.. Small.Keys];

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, bool stemAsGemm) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { StemConvolutions = stemAsGemm ? StemConvChoice.Gemm : StemConvChoice.Cudnn }.Compile(model, inputs);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Stem_as_patches_times_filter_agrees_with_onnx_runtime(string name)
    {
        var c = Small[name];
        var (plan, difference) = RunAgainstOnnxRuntime(c, (model, inputs) => Plan(model, inputs, stemAsGemm: true));
        var product = Assert.IsType<MatmulStep>(Assert.Single(plan.Steps, s => s is MatmulStep));
        Assert.Equal(0, product.Problem.K % 8);
        Assert.Equal(c.After != "none", product.Problem.Relu);
        Assert.True(difference is null, $"{name}: {difference}");
    }

    /// <summary>
    /// The case planned by <paramref name="plan"/> and run on the CPU (skipped where it cannot be) against ONNX Runtime in
    /// float32: the plan and how the outputs differ (null where they agree).
    /// </summary>
    internal static (ExecutionPlan Plan, string? Difference) RunAgainstOnnxRuntime(GroupedConvCase c, Func<OnnxModel, List<Tensor>, ExecutionPlan> plan)
    {
        CpuKernelRunner.Require();
        var model = c.Model();
        var inputs = c.Inputs(9);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var planned = plan(model, inputs);
        CpuKernelRunner.Prepare([planned]);
        Assert.Null(CpuKernelRunner.CannotRun(planned));
        return (planned, KernelCaseModels.Difference(CpuKernelRunner.Run(planned, inputs), expected, half: true));
    }

    [Fact]
    public void Without_the_switch_a_stem_goes_to_cudnn()
    {
        var c = Small["7x7-s2-p3-bn-relu"];
        var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { PlansConvolutionsWithoutLibrary = true }.Compile(c.Model(), c.Inputs(9));
        Assert.DoesNotContain(plan.Steps, s => s is MatmulStep);
        Assert.Single(plan.Steps, s => s is ConvProblemStep);
    }
}
