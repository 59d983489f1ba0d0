using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own depthwise kernel reads the elementwise chain that makes its input (a QDQ model's DequantizeLinear of an 8-bit
/// activation, a Clip after a product) as it loads each element, and writes a QuantizeLinear alone after it as 8 bits
/// itself: no pass writes the chain's result or the float output between them. Planned without a GPU, run on the CPU
/// through g++, against ONNX Runtime in float32.
/// </summary>
public sealed class DepthwiseFusionOnCpuTests
{
    /// <summary>
    /// x [2, 16, 10, 12] -> [a pointwise Conv] -> Q/DQ (uint8, zero point 128) or Clip(0, 6) -> depthwise Conv 3x3 pad 1
    /// (a per-channel int8 filter through DequantizeLinear, or a float one) with a bias -> [Q/DQ (zero point 7 uint8 or
    /// -3 int8)] -> Relu.
    /// </summary>
    private static OnnxModel Model(bool quantized, bool pointwise, long stride, ElementType zeroType = ElementType.UInt8)
    {
        var g = new GraphBuilder("dw-fusion", seed: 3);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 10L, 12L);
        var p = pointwise ? g.Node("Conv", [x, g.Weight("pw", [16, 16, 1, 1], 0.4f), g.Weight("pb", [16], 0.1f)]) : x;
        string a, w;
        if (quantized)
        {
            var s1 = g.Initializer("s1", [], [0.02f]);
            var z1 = g.Raw<byte>("z1", ElementType.UInt8, [], [128]);
            a = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [p, s1, z1]), s1, z1]);
            var rng = new Random(5);
            var wq = g.Raw<sbyte>("wq", ElementType.Int8, [16, 1, 3, 3], [.. Enumerable.Range(0, 16 * 9).Select(_ => (sbyte)rng.Next(-127, 128))]);
            // Scales small enough that one flipped step of the input's rounding (an fp16 product's value against ONNX
            // Runtime's float32 one) moves an output by under one of its own steps.
            var ws = g.Initializer("ws", [16], [.. Enumerable.Range(0, 16).Select(i => 0.0005f + (0.0001f * i))]);
            w = g.Node("DequantizeLinear", [wq, ws], GraphBuilder.Attr("axis", 0L));
        }
        else
        {
            a = g.Node("Clip", [p, g.Initializer("lo", [], [0f]), g.Initializer("hi", [], [6f])]);
            w = g.Weight("dw", [16, 1, 3, 3], 0.5f);
        }

        var y = g.Node("Conv", [a, w, g.Weight("db", [16], 0.1f)], GraphBuilder.Attr("group", 16L), GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L), GraphBuilder.Attr("strides", stride, stride));
        if (quantized)
        {
            var s2 = g.Initializer("s2", [], [0.01f]);
            var z2 = zeroType == ElementType.UInt8 ? g.Raw<byte>("z2", zeroType, [], [7]) : g.Raw<sbyte>("z2", zeroType, [], [-3]);
            y = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [y, s2, z2]), s2, z2]);
        }

        g.Rename(g.Node("Relu", [y]), "r");
        g.Output("r", ElementType.Float, 2L, 16L, ((10 - 1) / stride) + 1, ((12 - 1) / stride) + 1);
        return g.Build("dw-fusion");
    }

    private static List<Tensor> Inputs()
    {
        var rng = new Random(8);
        return [Tensor.From<float>(ElementType.Float, [2, 16, 10, 12], [.. Enumerable.Range(0, 2 * 16 * 10 * 12).Select(_ => (float)((rng.NextDouble() * 2.4) - 1.2))])];
    }

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, Precision precision) =>
        new NoGpuTarget(precision, hostMatmuls: true).Compile(model, inputs);

    private static KernelStep Depthwise(ExecutionPlan plan) =>
        Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s is KernelStep k && k.Source.Contains("v[s][u]", StringComparison.Ordinal)));

    private static void AgreesWithOnnxRuntime(OnnxModel model, ExecutionPlan plan, List<Tensor> inputs, bool half)
    {
        CpuKernelRunner.Require();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half);
        Assert.True(difference is null, difference);
    }

    [Theory]
    [InlineData(Precision.Fp16, 1L, ElementType.UInt8)]
    [InlineData(Precision.Fp16, 2L, ElementType.Int8)]
    [InlineData(Precision.Fp32, 1L, ElementType.Int8)]
    [InlineData(Precision.Fp16, 2L, ElementType.UInt8)]
    [InlineData(Precision.Fp16, 1L, ElementType.Int8)]
    [InlineData(Precision.Fp32, 2L, ElementType.Int8)]
    public void A_qdq_depthwise_layer_reads_8_bits_and_writes_8_bits_in_one_kernel(Precision precision, long stride, ElementType zeroType)
    {
        // In half precision the pointwise product makes the channels-last value the chain reads; in float32 the input does.
        var half = precision == Precision.Fp16;
        var model = Model(quantized: true, pointwise: half, stride, zeroType);
        var inputs = Inputs();
        var plan = Plan(model, inputs, precision);
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        var depthwise = Depthwise(plan);
        Assert.Contains("xe = e.v[u]", depthwise.Source, StringComparison.Ordinal); // the DequantizeLinear, as each element loads
        Assert.Contains("rintf", depthwise.Source, StringComparison.Ordinal); // the QuantizeLinear, as each output stores
        Assert.Contains(zeroType == ElementType.UInt8 ? "unsigned char* __restrict__ y" : "signed char* __restrict__ y", depthwise.Source, StringComparison.Ordinal);

        // The input pair's chain is written by no step of its own before the convolution; the output's Q is the kernel's.
        var before = plan.Steps.TakeWhile(s => s != depthwise).ToList();
        Assert.True(before.Count == (half ? 2 : 0), steps); // fp16: x to channels-last half, the pointwise product
        Assert.Equal(half ? 2 : 0, before.Count);
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("QuantizeLinear", StringComparison.Ordinal));
        AgreesWithOnnxRuntime(model, plan, inputs, half);
    }

    [Theory]
    [InlineData(Precision.Fp16, 1L)]
    [InlineData(Precision.Fp16, 2L)]
    public void A_clip_after_a_product_is_applied_as_the_depthwise_kernel_loads(Precision precision, long stride)
    {
        var model = Model(quantized: false, pointwise: true, stride);
        var inputs = Inputs();
        var plan = Plan(model, inputs, precision);
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        Assert.Contains("xe = e.v[u]", Depthwise(plan).Source, StringComparison.Ordinal);
        Assert.True(!plan.Steps.Any(s => s.Node.StartsWith("Clip", StringComparison.Ordinal)), steps);
        AgreesWithOnnxRuntime(model, plan, inputs, half: true);
    }
}
