using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Convolutions with a small output (BATCHWISE_CONV_GEMM_ROWS: a late layer at a small batch) planned as patches times
/// the filter in one cuBLASLt GEMM, the bias, a residual Add and the ReLU in its epilogue; planned without a GPU in half
/// precision and run by the reference runner (<see cref="CpuKernelRunner"/>) against ONNX Runtime in float32.
/// </summary>
public sealed class ConvAsGemmOnCpuTests
{
    /// <summary>x [2, 16, 7, 9] -> Conv 3x3 (pad 1, stride as given) to 16 or 24 channels with a bias [-> + x] -> Relu.</summary>
    private static OnnxModel Model(long stride, bool residual)
    {
        var g = new GraphBuilder("conv-gemm", seed: 6);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 7L, 9L);
        var k = residual ? 16L : 24L;
        var y = g.Node("Conv", [x, g.Weight("w", [k, 16, 3, 3], 0.2f), g.Weight("b", [k], 0.1f)], GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L), GraphBuilder.Attr("strides", stride, stride));
        if (residual)
        {
            y = g.Node("Add", [y, x]);
        }

        g.Rename(g.Node("Relu", [y]), "r");
        g.Output("r", ElementType.Float, 2L, k, ((7 - 1) / stride) + 1, ((9 - 1) / stride) + 1);
        return g.Build("conv-gemm");
    }

    private static List<Tensor> Inputs()
    {
        var rng = new Random(2);
        return [Tensor.From<float>(ElementType.Float, [2, 16, 7, 9], [.. Enumerable.Range(0, 2 * 16 * 7 * 9).Select(_ => (float)((rng.NextDouble() * 2) - 1))])];
    }

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, long rows) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { ConvGemmRows = rows, PlansConvolutionsWithoutLibrary = true }.Compile(model, inputs);

    [Theory]
    [InlineData(1L, true)]
    [InlineData(2L, false)]
    public void A_small_convolution_as_one_gemm_with_its_epilogue_agrees_with_onnx_runtime(long stride, bool residual)
    {
        CpuKernelRunner.Require();
        var model = Model(stride, residual);
        var inputs = Inputs();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = Plan(model, inputs, rows: 256);
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        var product = Assert.IsType<MatmulStep>(Assert.Single(plan.Steps, s => s is MatmulStep));
        Assert.True(product.Problem.Relu, steps);
        Assert.Equal(residual ? 1f : 0f, product.Problem.Beta);
        Assert.True(product.Buffers[3] >= 0, "the bias is the GEMM's epilogue");
        Assert.DoesNotContain(plan.Steps, s => s is ConvProblemStep || s.Node.StartsWith("Relu", StringComparison.Ordinal) || s.Node.StartsWith("Add", StringComparison.Ordinal));
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half: true);
        Assert.True(difference is null, difference);
    }

    [Theory]
    [InlineData(0L)] // off
    [InlineData(125L)] // the output has 2 x 7 x 9 = 126 pixels: one more than the limit
    public void A_convolution_past_the_limit_stays_with_cudnn(long rows)
    {
        var plan = Plan(Model(1, residual: true), Inputs(), rows);
        Assert.Single(plan.Steps, s => s is ConvProblemStep);
        Assert.DoesNotContain(plan.Steps, s => s is MatmulStep);
    }
}
