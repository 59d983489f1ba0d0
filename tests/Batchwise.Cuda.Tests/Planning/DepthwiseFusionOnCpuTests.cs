using Batchwise.Cuda.Kernels;
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
    /// (a per-channel int8 filter through DequantizeLinear, or a float one) with a bias -> [Q -> DQ -> Clip(0, 6) -> Q ->
    /// DQ, as `optimize --int8` writes a ReLU6 (the first zero point 7 uint8 or -3 int8)] -> Relu; with
    /// <paramref name="second"/> a second such depthwise layer (stride 1) reads the first one's 8-bit output; without
    /// <paramref name="bias"/> the convolutions have none.
    /// </summary>
    private static OnnxModel Model(bool quantized, bool pointwise, long stride, ElementType zeroType = ElementType.UInt8, bool second = false, bool bias = true, long height = 10, long width = 12)
    {
        var g = new GraphBuilder("dw-fusion", seed: 3);
        var x = g.Input("x", ElementType.Float, 2L, 16L, height, width);
        var p = pointwise ? g.Node("Conv", [x, g.Weight("pw", [16, 16, 1, 1], 0.4f), g.Weight("pb", [16], 0.1f)]) : x;
        var rng = new Random(5);
        string Pair(string v, float scale, string zero)
        {
            var s = g.Initializer("s", [], [scale]);
            return g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [v, s, zero]), s, zero]);
        }

        string Layer(string a, long layerStride)
        {
            string w;
            if (quantized)
            {
                var wq = g.Raw<sbyte>("wq", ElementType.Int8, [16, 1, 3, 3], [.. Enumerable.Range(0, 16 * 9).Select(_ => (sbyte)rng.Next(-127, 128))]);
                // Scales small enough that one flipped step of the input's rounding (an fp16 product's value against ONNX
                // Runtime's float32 one) moves an output by under one of its own steps.
                var ws = g.Initializer("ws", [16], [.. Enumerable.Range(0, 16).Select(i => 0.0005f + (0.0001f * i))]);
                w = g.Node("DequantizeLinear", [wq, ws], GraphBuilder.Attr("axis", 0L));
            }
            else
            {
                w = g.Weight("dw", [16, 1, 3, 3], 0.5f);
            }

            var y = g.Node("Conv", bias ? [a, w, g.Weight("db", [16], 0.1f)] : [a, w], GraphBuilder.Attr("group", 16L), GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L), GraphBuilder.Attr("strides", layerStride, layerStride));
            if (!quantized)
            {
                return y;
            }

            var z2 = zeroType == ElementType.UInt8 ? g.Raw<byte>("z2", zeroType, [], [7]) : g.Raw<sbyte>("z2", zeroType, [], [-3]);
            var clipped = g.Node("Clip", [Pair(y, 0.01f, z2), g.Initializer("lo", [], [0f]), g.Initializer("hi", [], [6f])]);
            return Pair(clipped, (float)OutputStep, g.Raw<byte>("z3", ElementType.UInt8, [], [0]));
        }

        var a = quantized ? Pair(p, 0.02f, g.Raw<byte>("z1", ElementType.UInt8, [], [128])) : g.Node("Clip", [p, g.Initializer("lo", [], [0f]), g.Initializer("hi", [], [6f])]);
        var y = Layer(a, stride);
        if (second)
        {
            y = Layer(y, 1);
        }

        g.Rename(g.Node("Relu", [y]), "r");
        g.Output("r", ElementType.Float, 2L, 16L, ((height - 1) / stride) + 1, ((width - 1) / stride) + 1);
        return g.Build("dw-fusion");
    }

    private static List<Tensor> Inputs(long height = 10, long width = 12)
    {
        var rng = new Random(8);
        return [Tensor.From<float>(ElementType.Float, [2, 16, height, width], [.. Enumerable.Range(0, (int)(2 * 16 * height * width)).Select(_ => (float)((rng.NextDouble() * 2.4) - 1.2))])];
    }

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs, Precision precision, int multiprocessors = 132) =>
        new NoGpuTarget(precision, hostMatmuls: true) { Multiprocessors = multiprocessors }.Compile(model, inputs);

    private static List<KernelStep> DepthwiseSteps(ExecutionPlan plan) =>
        [.. plan.Steps.OfType<KernelStep>().Where(k => k.Source.Contains("v[s][u]", StringComparison.Ordinal))];

    private static KernelStep Depthwise(ExecutionPlan plan) => Assert.Single(DepthwiseSteps(plan));

    /// <summary>The last QuantizeLinear's scale: a quantized model's outputs are multiples of it.</summary>
    private const double OutputStep = 0.008;

    /// <summary>
    /// Against ONNX Runtime: <see cref="KernelCaseModels.Difference"/>'s bar, or for a quantized model (its outputs on a
    /// grid of <see cref="OutputStep"/>) few outputs off the expected grid point: at most 1% by one step in float32 (sums
    /// in another order may round a value at a tie the other way), at most 2% by up to two in half precision (the value
    /// the first layer quantizes is rounded to half first, and may round a step the other way at several taps).
    /// </summary>
    private static void AgreesWithOnnxRuntime(OnnxModel model, ExecutionPlan plan, List<Tensor> inputs, bool half, bool quantized = true)
    {
        CpuKernelRunner.Require();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        CpuKernelRunner.Prepare([plan]);
        Assert.Null(CpuKernelRunner.CannotRun(plan));
        var actual = CpuKernelRunner.Run(plan, inputs);
        if (!quantized)
        {
            var difference = KernelCaseModels.Difference(actual, expected, half);
            Assert.True(difference is null, difference);
            return;
        }

        var (a, e) = (actual[0].ToDoubles(), expected[0].ToDoubles());
        Assert.Equal(e.Length, a.Length);
        var steps = half ? 2 : 1;
        var off = Enumerable.Range(0, e.Length).Where(i => Math.Abs(a[i] - e[i]) > 1e-4 + (2e-3 * Math.Abs(e[i]))).ToList(); // fp16 outputs hold ~3 digits
        Assert.True(off.All(i => Math.Abs(a[i] - e[i]) <= (steps * OutputStep) + 1e-3), $"output [{off.FirstOrDefault()}] = {a[off.FirstOrDefault()]}, expected {e[off.FirstOrDefault()]}: more than {steps} step(s)");
        Assert.True(off.Count <= e.Length * (half ? 2 : 1) / 100, $"{off.Count} of {e.Length} outputs a step away");
    }

    [Theory]
    [InlineData(Precision.Fp16, 1L, ElementType.UInt8)]
    [InlineData(Precision.Fp16, 2L, ElementType.Int8)]
    [InlineData(Precision.Fp32, 1L, ElementType.Int8)]
    [InlineData(Precision.Fp16, 2L, ElementType.UInt8)]
    [InlineData(Precision.Fp16, 1L, ElementType.Int8)]
    [InlineData(Precision.Fp32, 2L, ElementType.Int8)]
    [InlineData(Precision.Fp32, 1L, ElementType.UInt8, false)]
    [InlineData(Precision.Fp16, 2L, ElementType.Int8, false)]
    public void A_qdq_depthwise_layer_writes_the_quantized_chain_after_it_as_8_bits(Precision precision, long stride, ElementType zeroType, bool bias = true)
    {
        // The input's pair over a float value divides and rounds: written once by a pass (a chain run at every tap would
        // cost more); the output's Q -> DQ -> Clip -> Q is the kernel's own, written as 8 bits.
        var half = precision == Precision.Fp16;
        var model = Model(quantized: true, pointwise: half, stride, zeroType, bias: bias);
        var inputs = Inputs();
        var plan = Plan(model, inputs, precision);
        var depthwise = Depthwise(plan);
        Assert.Equal(bias, depthwise.Source.Contains("bias[ch", StringComparison.Ordinal));
        Assert.DoesNotContain("xe = e.v[u]", depthwise.Source, StringComparison.Ordinal);
        Assert.Contains("fmaxf(bw_qdiv(z, ", depthwise.Source, StringComparison.Ordinal); // the first Q, by the reciprocal
        Assert.Contains("unsigned char* __restrict__ y", depthwise.Source, StringComparison.Ordinal); // the last Q's uint8
        Assert.Contains("> 6.0f ? 6.0f :", depthwise.Source, StringComparison.Ordinal); // the Clip between them, as its elementwise form writes it
        Assert.Contains(zeroType == ElementType.UInt8 ? "-7.0f), 248.0f)" : "-125.0f), 130.0f)", depthwise.Source, StringComparison.Ordinal); // its saturation less its zero point
        Assert.Contains("lut_out[((j & ~3) << 5) | (lane_ << 2) | (j & 3)]", depthwise.Source, StringComparison.Ordinal); // what follows the first Q: a table of its 256 values, a copy per lane
        Assert.DoesNotContain(plan.Steps.SkipWhile(s => s != depthwise).Skip(1), s => s.Node.StartsWith("Conv", StringComparison.Ordinal));
        AgreesWithOnnxRuntime(model, plan, inputs, half);
    }

    [Theory]
    [InlineData(Precision.Fp16)]
    [InlineData(Precision.Fp32)]
    public void A_depthwise_layer_reading_an_8_bit_output_reads_its_chain_through_a_table(Precision precision)
    {
        var half = precision == Precision.Fp16;
        var model = Model(quantized: true, pointwise: half, 1, second: true);
        var inputs = Inputs();
        var plan = Plan(model, inputs, precision);
        var steps = string.Join("; ", plan.Steps.Select(s => s.Node));
        var layers = DepthwiseSteps(plan);
        Assert.True(layers.Count == 2, steps);
        Assert.DoesNotContain("lut[", layers[0].Source, StringComparison.Ordinal); // over the input or a half product
        Assert.Contains("lut[((unsigned)(unsigned char)e.v[u] << 5) | lane_]", layers[1].Source, StringComparison.Ordinal); // over the first one's uint8, a copy per lane
        Assert.True(plan.Steps.ToList().IndexOf(layers[1]) == plan.Steps.ToList().IndexOf(layers[0]) + 1, steps); // no pass between the layers
        AgreesWithOnnxRuntime(model, plan, inputs, half);
    }

    [Theory]
    [InlineData(Precision.Fp16, 1L)]
    [InlineData(Precision.Fp32, 2L)]
    public void A_depthwise_kernel_with_tables_runs_fewer_threads_than_positions_each_taking_positions_a_grid_apart(Precision precision, long stride)
    {
        // Two layers, the second reading the first's 8-bit output through its table, over 96 x 96 outputs each. On a device
        // of one multiprocessor the kernels launch 12 blocks of 256 threads for more positions than that (a block fills
        // its tables once for all of its positions).
        var half = precision == Precision.Fp16;
        var (height, width) = (96 * stride, 96 * stride);
        var model = Model(quantized: true, pointwise: half, stride, second: true, height: height, width: width);
        var inputs = Inputs(height, width);
        var plan = Plan(model, inputs, precision, multiprocessors: 1);
        var layers = DepthwiseSteps(plan);
        Assert.Equal(2, layers.Count);
        var positions = KernelSource.DepthwiseThreads(true, 4, 2, 16, [96, 96], GraphCompiler.DepthwiseRowsFromEnvironment ?? 2);
        Assert.True(positions > 12 * 256, $"{positions} positions");
        Assert.All(layers, k => Assert.Contains("i += (", k.Source, StringComparison.Ordinal));
        Assert.All(layers, k => Assert.Equal(12 * 256, k.Grid * k.Block));
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
        AgreesWithOnnxRuntime(model, plan, inputs, half: true, quantized: false);
    }

    /// <summary>
    /// ConvNeXt's block start: depthwise 7x7 (16 channels, bias) -> Transpose(0, 2, 3, 1) -> LayerNormalization over the
    /// channels -> Relu, a [2, 10, 12, 16] output.
    /// </summary>
    private static OnnxModel ConvNextBlock()
    {
        var rng = new Random(4);
        var g = new GraphBuilder("convnext", seed: 1);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 10L, 12L);
        var w = g.Initializer("w", [16, 1, 7, 7], [.. Enumerable.Range(0, 16 * 49).Select(_ => (float)((rng.NextDouble() - 0.5) * 0.4))]);
        var b = g.Initializer("b", [16], [.. Enumerable.Range(0, 16).Select(_ => (float)(rng.NextDouble() - 0.5))]);
        var d = g.Node("Conv", [x, w, b], GraphBuilder.Attr("group", 16L), GraphBuilder.Attr("kernel_shape", 7L, 7L), GraphBuilder.Attr("pads", 3L, 3L, 3L, 3L));
        var t = g.Node("Transpose", [d], GraphBuilder.Attr("perm", 0L, 2L, 3L, 1L));
        var scale = g.Initializer("ls", [16], [.. Enumerable.Range(0, 16).Select(_ => (float)(0.5 + rng.NextDouble()))]);
        var ln = g.Node("LayerNormalization", [t, scale, g.Initializer("lb", [16], [.. Enumerable.Range(0, 16).Select(_ => (float)(rng.NextDouble() - 0.5))])], GraphBuilder.Attr("axis", -1L));
        g.Rename(g.Node("Relu", [ln]), "y");
        g.Output("y", ElementType.Float, 2L, 10L, 12L, 16L);
        return g.Build("convnext", opset: 17);
    }

    [Fact]
    public void A_depthwise_layer_adds_its_bias_so_a_channels_last_layer_norm_reads_its_output_as_written()
    {
        var model = ConvNextBlock();
        var inputs = Inputs();
        var plan = Plan(model, inputs, Precision.Fp16);
        Assert.Contains("bias[ch + u]", Depthwise(plan).Source, StringComparison.Ordinal);
        // No pass between them: the Transpose is a relabelling of the channels-last output, which the LayerNorm reads.
        var nodes = plan.Steps.Select(s => s.Node).ToList();
        Assert.DoesNotContain(nodes, n => n.StartsWith("Transpose", StringComparison.Ordinal));
        Assert.Equal(1, nodes.IndexOf(nodes.First(n => n.StartsWith("LayerNormalization", StringComparison.Ordinal))) - nodes.IndexOf("Conv 'conv'"));
        AgreesWithOnnxRuntime(model, plan, inputs, half: true, quantized: false);
    }

    /// <summary>
    /// MobileNetV2's inverted residual in small: 1x1 expand -> ReLU6 -> depthwise 3x3 -> ReLU6 -> 1x1 project. The expand's
    /// ReLU6 is applied as the depthwise kernel loads, the depthwise's own ReLU6 before it writes: the project's product
    /// reads the kernel's output with no pass between them (there was one a block before session 38).
    /// </summary>
    [Theory]
    [InlineData(1L)]
    [InlineData(2L)]
    public void A_relu6_after_a_depthwise_layer_is_the_kernels_own_and_the_product_after_it_reads_its_output(long stride)
    {
        var g = new GraphBuilder("inverted-residual", seed: 4);
        var x = g.Input("x", ElementType.Float, 2L, 16L, 10L, 12L);
        string Relu6(string v) => g.Node("Clip", [v, g.Initializer("lo", [], [0f]), g.Initializer("hi", [], [6f])]);
        var expanded = Relu6(g.Node("Conv", [x, g.Weight("pe", [32, 16, 1, 1], 0.4f), g.Weight("be", [32], 0.1f)]));
        var dw = Relu6(g.Node("Conv", [expanded, g.Weight("dw", [32, 1, 3, 3], 0.5f), g.Weight("db", [32], 0.1f)], GraphBuilder.Attr("group", 32L), GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L), GraphBuilder.Attr("strides", stride, stride)));
        g.Rename(g.Node("Conv", [dw, g.Weight("pp", [16, 32, 1, 1], 0.3f), g.Weight("bp", [16], 0.1f)]), "y");
        g.Output("y", ElementType.Float, 2L, 16L, (9 / stride) + 1, (11 / stride) + 1);
        var model = g.Build("inverted-residual");
        var inputs = Inputs();
        var plan = Plan(model, inputs, Precision.Fp16);
        var steps = plan.Steps.ToList();
        var depthwise = Depthwise(plan);
        Assert.EndsWith(" + Clip", depthwise.Node, StringComparison.Ordinal);
        Assert.Contains("xe = e.v[u]", depthwise.Source, StringComparison.Ordinal); // the expand's ReLU6, as it loads
        Assert.Contains("const float z = acc[r][o][u]", depthwise.Source, StringComparison.Ordinal); // its own, before it writes
        Assert.IsType<MatmulStep>(steps[steps.IndexOf(depthwise) + 1]);
        Assert.DoesNotContain(steps, s => s.Node.StartsWith("Clip", StringComparison.Ordinal));
        AgreesWithOnnxRuntime(model, plan, inputs, half: true, quantized: false);
    }
}
