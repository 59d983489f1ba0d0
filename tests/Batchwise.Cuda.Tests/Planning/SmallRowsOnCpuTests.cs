using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Matrix products of 1 to 8 rows planned as the own kernel (BATCHWISE_SMALL_MATMUL=own) without a GPU, in float32 and
/// float16, run by the reference runner (<see cref="CpuKernelRunner"/>) against ONNX Runtime in float32: the bias, a
/// Gemm's C and a residual Add are the kernel's, not steps of their own; cublaslt, and nine rows, keep cuBLASLt.
/// </summary>
public sealed class SmallRowsOnCpuTests
{
    private const string OwnStep = "(own small-row product)";

    public static TheoryData<string, bool> Cases => [.. SmallRowsModels.Small.Keys.SelectMany(k => new[] { (k, false), (k, true) })];

    private static ExecutionPlan Plan(SmallRowsCase c, bool half, SmallMatmulChoice choice) =>
        new NoGpuTarget(half ? Precision.Fp16 : Precision.Fp32, hostMatmuls: true) { SmallMatmuls = choice }.Compile(c.Model(), c.Inputs(3));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Small_row_product_through_the_own_kernel_agrees_with_onnx_runtime(string name, bool half)
    {
        CpuKernelRunner.Require();
        var c = SmallRowsModels.Small[name];
        var model = c.Model();
        var inputs = c.Inputs(3);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = Plan(c, half, SmallMatmulChoice.Own);
        Assert.DoesNotContain(plan.Steps, s => s is MatmulStep);
        Assert.Single(plan.Steps, s => s is KernelStep && s.Node.EndsWith(OwnStep, StringComparison.Ordinal));
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half);
        Assert.True(difference is null, $"{name} {(half ? "fp16" : "fp32")}: {difference}");
    }

    [Theory]
    [InlineData("gemm-m5-k37-n24")]
    [InlineData("gemm-c-m4-k40-n12")]
    [InlineData("matmul-residual-m8-k300-n16")]
    public void The_bias_c_and_residual_add_are_taken_into_the_own_kernel(string name)
    {
        var c = SmallRowsModels.Small[name];
        var plan = Plan(c, half: false, SmallMatmulChoice.Own);
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("Add", StringComparison.Ordinal));
        var product = Assert.Single(plan.Steps, s => s.Node.EndsWith(OwnStep, StringComparison.Ordinal));
        Assert.True(product.Buffers.Length == (c.Kind == "matmul-residual" ? 5 : 4), steps); // y, a, w, then the bias and C that exist
    }

    [Theory]
    [InlineData("gemm-m5-k37-n24", true)]
    [InlineData("gemm-c-m4-k40-n12", false)]
    public void In_fp16_a_gemm_that_is_a_float32_graph_output_is_written_in_float32_by_the_kernel_with_no_conversion_after_it(string name, bool direct)
    {
        // A classifier's logits at a small batch: the kernel writes its float sums; the conversion pass to the declared
        // float32 output (a kernel a run) goes. Not with a C (the kernel's C is of the operands' type): converted as before.
        var plan = Plan(SmallRowsModels.Small[name], half: true, SmallMatmulChoice.Own);
        var product = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.EndsWith(OwnStep, StringComparison.Ordinal)));
        Assert.Equal(direct, product.Source.Contains("float* __restrict__ y", StringComparison.Ordinal));
        Assert.Equal(direct ? 0 : 1, plan.Steps.Count(s => s.Node.StartsWith("output ", StringComparison.Ordinal)));
        Assert.Equal(Onnx.ElementType.Float, plan.Outputs[0].Type);
    }

    [Fact]
    public void Cublaslt_keeps_small_row_products_nine_rows_stay_on_cublaslt_and_auto_takes_one_row()
    {
        var five = SmallRowsModels.Small["gemm-m5-k37-n24"];
        var (one, nine) = (five with { M = 1 }, five with { M = 9 });
        var cases = new[]
        {
            (five, SmallMatmulChoice.Library, false), (nine, SmallMatmulChoice.Own, false), (five, SmallMatmulChoice.Own, true),
            (one, SmallMatmulChoice.Auto, true), (five, SmallMatmulChoice.Auto, false), (one, GraphCompiler.SmallMatmulFromEnvironment, Environment.GetEnvironmentVariable("BATCHWISE_SMALL_MATMUL") is not "cublaslt"),
        };
        foreach (var (c, choice, own) in cases)
        {
            var plan = Plan(c, half: true, choice);
            Assert.Equal(own ? 0 : 1, plan.Steps.Count(s => s is MatmulStep));
            Assert.Equal(own ? 1 : 0, plan.Steps.Count(s => s.Node.EndsWith(OwnStep, StringComparison.Ordinal)));
        }
    }
}
