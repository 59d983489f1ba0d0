using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Pointwise convolutions planned as one cuBLASLt GEMM (BATCHWISE_POINTWISE_CONV=gemm) without a GPU in half precision,
/// run by the reference runner (<see cref="CpuKernelRunner"/>) against ONNX Runtime in float32; the bias, the residual
/// Add and the ReLU are the GEMM's epilogue, not kernels of their own.
/// </summary>
public sealed class PointwiseConvOnCpuTests
{
    public static TheoryData<string> Cases => [.. PointwiseConvModels.Small.Keys];

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, PointwiseConvChoice choice) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { PointwiseConvolutions = choice }.Compile(model, inputs);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Pointwise_conv_as_a_gemm_agrees_with_onnx_runtime(string name)
    {
        CpuKernelRunner.Require();
        var c = PointwiseConvModels.Small[name];
        var model = c.Model();
        var inputs = c.Inputs(5);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = Plan(model, inputs, PointwiseConvChoice.Gemm);
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        var product = Assert.IsType<MatmulStep>(Assert.Single(plan.Steps, s => s is MatmulStep));
        Assert.Equal(c.After != "none", product.Problem.Relu);
        Assert.Equal(c.Residual ? 1f : 0f, product.Problem.Beta);
        Assert.True(product.Buffers[3] >= 0, "the bias is the GEMM's epilogue");
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half: true);
        Assert.True(difference is null, $"{name}: {difference}");
    }

    [Fact]
    public void The_residual_add_and_relu_are_taken_into_the_product()
    {
        var c = PointwiseConvModels.Small["16to32-residual-relu"];
        var plan = Plan(c.Model(), c.Inputs(5), PointwiseConvChoice.Gemm);
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("Add", StringComparison.Ordinal) || s.Node.StartsWith("Relu", StringComparison.Ordinal));
        Assert.Single(plan.Steps, s => s is MatmulStep);
        Assert.True(plan.Steps.Count <= 5, steps); // x and z to channels-last, the product, y back
    }

    [Fact]
    public void The_default_takes_the_gemm_and_cudnn_leaves_pointwise_convolutions_to_cudnn()
    {
        var c = PointwiseConvModels.Small["16to32-relu"];
        var model = c.Model();
        var inputs = c.Inputs(5);
        foreach (var choice in new[] { GraphCompiler.PointwiseConvFromEnvironment, PointwiseConvChoice.Cudnn })
        {
            var plan = new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { PointwiseConvolutions = choice, PlansConvolutionsWithoutLibrary = true }.Compile(model, inputs);
            Assert.Equal(choice == PointwiseConvChoice.Gemm ? 1 : 0, plan.Steps.Count(s => s is MatmulStep));
            Assert.Equal(choice == PointwiseConvChoice.Gemm ? 0 : 1, plan.Steps.Count(s => s is ConvProblemStep));
        }
    }
}
