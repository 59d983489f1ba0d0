using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own kernels of issue 16 (<see cref="KernelCaseModels"/>), planned without a GPU in float32 and float16 (4-d values
/// channels-last) and run on the CPU with g++ (<see cref="CpuKernelRunner"/>), against ONNX Runtime. A plan that fell
/// back to cuDNN would hold a library step and could not run here, so each case also shows the own kernel was chosen.
/// </summary>
public sealed class KernelCasesOnCpuTests
{
    private sealed record Prepared(List<Tensor> Inputs, IReadOnlyList<Tensor> Expected, List<(Precision Precision, ExecutionPlan Plan)> Plans);

    private static readonly Lazy<Dictionary<string, Prepared>> All = new(PrepareAll);

    public static TheoryData<string> Cases => [.. KernelCaseModels.All.Keys];

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, Precision precision)
    {
        return new NoGpuTarget(precision).Compile(model, inputs);
    }

    /// <summary>Plans every case at both precisions, then compiles all their kernels in one g++ run.</summary>
    private static Dictionary<string, Prepared> PrepareAll()
    {
        var all = KernelCaseModels.All.Keys.ToDictionary(n => n, n =>
        {
            var (model, inputs, expected) = KernelCaseModels.Build(n);
            return new Prepared(inputs, expected, [.. new[] { Precision.Fp32, Precision.Fp16 }.Select(p => (p, Plan(model, inputs, p)))]);
        }, StringComparer.Ordinal);
        CpuKernelRunner.Prepare(all.Values.SelectMany(p => p.Plans.Select(x => x.Plan)));
        return all;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Own_kernel_plan_runs_on_the_cpu_and_agrees_with_onnx_runtime(string name)
    {
        CpuKernelRunner.Require();
        var c = All.Value[name];
        foreach (var (precision, plan) in c.Plans)
        {
            Assert.Null(CpuKernelRunner.CannotRun(plan));
            var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, c.Inputs), c.Expected, precision == Precision.Fp16);
            Assert.True(difference is null, $"{name} ({precision}): {difference}");
        }
    }

    [Theory]
    [InlineData("maxpool-3x3-stride2-channels-last-vector", true)]
    [InlineData("averagepool-3x3-include-pad-vector", true)]
    [InlineData("maxpool-2x2-odd-channels", false)]
    public void Half_precision_channels_last_pooling_takes_eight_channels_per_thread_where_they_divide(string name, bool vector)
    {
        var (model, inputs) = KernelCaseModels.All[name]();
        var plan = Plan(model, inputs, Precision.Fp16);

        var pool = Assert.Single(plan.Steps.OfType<KernelStep>(), s => s.Node.Contains("Pool", StringComparison.Ordinal));
        Assert.Equal(vector, pool.Source.Contains("ch * 8;", StringComparison.Ordinal));
    }

    [Fact]
    public void A_channels_last_slice_copies_once_as_stored_and_a_whole_tensor_slice_not_at_all()
    {
        var (model, inputs) = KernelCaseModels.All["slice-channels-and-width-channels-last"]();
        var plan = Plan(model, inputs, Precision.Fp16);
        var (whole, wholeInputs) = KernelCaseModels.All["slice-whole-tensor"]();
        var wholePlan = Plan(whole, wholeInputs, Precision.Fp16);

        // The input's conversion to channels-last, the slice, the output's conversion back: no NCHW copy before the slice.
        Assert.Single(plan.Steps, s => s.Node.StartsWith("Slice", StringComparison.Ordinal));
        Assert.DoesNotContain(wholePlan.Steps, s => s.Node.StartsWith("Slice", StringComparison.Ordinal));
    }

    [Fact]
    public void Transposes_around_a_channels_last_layer_norm_copy_nothing_in_half_precision()
    {
        var (model, inputs) = KernelCaseModels.All["transpose-channels-last-layernorm"]();
        var plan = Plan(model, inputs, Precision.Fp16);

        // The input's conversion, the LayerNorm, the channel scale (written out where the second Transpose needs it in
        // memory), the residual add and the output's conversion: no copy for either Transpose, no layout copy for the add.
        Assert.True(plan.Steps.Count == 5, string.Join("; ", plan.Steps.Select(s => s.Node)));
        Assert.Single(plan.Steps, s => s.Node.StartsWith("Transpose", StringComparison.Ordinal));
    }

    [Fact]
    public void Spatial_mean_of_a_channels_last_value_reads_it_as_stored()
    {
        var (model, inputs) = KernelCaseModels.All["reducemean-hw-squeeze-excite"]();
        var plan = Plan(model, inputs, Precision.Fp16);

        // One kernel for the mean (no NCHW copy of the input first), lanes along the channels.
        var mean = Assert.Single(plan.Steps, s => s.Node.StartsWith("ReduceMean", StringComparison.Ordinal));
        Assert.Contains("part[", Assert.IsType<KernelStep>(mean).Source, StringComparison.Ordinal);
    }

    [Fact]
    public void Depthwise_convolution_is_one_own_kernel_with_its_bias_and_the_activation_after_it()
    {
        var (model, inputs) = KernelCaseModels.All["dw-3x3-stride2-asymmetric-hardswish"]();
        foreach (var precision in new[] { Precision.Fp32, Precision.Fp16 })
        {
            // The convolution's kernel adds the bias and applies the HardSwish before it writes the output (in half
            // precision the input's conversion to channels-last half comes first, the output's conversion back to float32
            // NCHW last); with BATCHWISE_DEPTHWISE_ACTIVATION=off the HardSwish was a kernel of its own after it.
            var plan = Plan(model, inputs, precision);
            var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
            Assert.True(plan.Steps.Count == (precision == Precision.Fp16 ? 3 : 1), steps);
            var conv = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal)));
            Assert.EndsWith(" + HardSwish", conv.Node, StringComparison.Ordinal);
            Assert.Contains("const float z = acc[r][o][u]", conv.Source, StringComparison.Ordinal);
            Assert.True(!plan.Steps.Any(s => s.Node.StartsWith("HardSwish", StringComparison.Ordinal)), steps);

            // With BATCHWISE_DEPTHWISE_ACTIVATION=off (a session's DepthwiseActivations) the HardSwish is a chain of its own.
            var apart = new NoGpuTarget(precision) { DepthwiseActivations = false }.Compile(model, inputs);
            var apartSteps = string.Join("; ", apart.Steps.Select(s => s.Node));
            Assert.True(apart.Steps.Count == plan.Steps.Count + 1, apartSteps);
            Assert.DoesNotContain(" + HardSwish", Assert.Single(apart.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal)).Node, StringComparison.Ordinal);
        }
    }
}
