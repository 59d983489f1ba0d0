using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The own int8 depthwise kernel (<see cref="KernelSource.Int8Depthwise"/>: dp4a over transposed byte windows) and the
/// ReLU6 chain a QDQ model writes after a layer (Conv -> Q -> DQ -> Clip -> Q) folded into the layer's epilogue, planned
/// without a GPU and run on the CPU with g++ (<see cref="CpuKernelRunner"/>) against ONNX Runtime's QDQ run (graph
/// optimizations off). The fold skips the first QuantizeLinear's rounding, so an output may be a step off; never more.
/// </summary>
public sealed class Int8DepthwiseOnCpuTests
{
    /// <summary>
    /// x uint8 [2, 16, h, w] -> DQ -> 1x1 expansion to c channels -> Q (scale 0.05, zero 120: up to 6.75) -> DQ -> Clip(0, 6) -> Q (scale
    /// <paramref name="reluScale"/>, zero <paramref name="reluZero"/>) -> DQ -> depthwise k x k (stride s, pads k/2) ->
    /// Q (zero 131) -> DQ -> Clip(<paramref name="clipLow"/>, 6) -> Q (scale 6/255 or the same as the first Clip's) = y.
    /// </summary>
    /// <para>With <paramref name="folded"/>, each ReLU6 as the engine folds it (Conv -> Clip within the first
    /// QuantizeLinear's range -> Q): the reference for the plan of the model without it, which skips the first rounding.</para>
    private static OnnxModel Model(int c, int kernel, int stride, float reluScale, int reluZero, float clipLow = 0, bool folded = false, long h = 11, long w = 13)
    {
        var rng = new Random(11);
        var g = new GraphBuilder("int8-depthwise");
        var x = g.Input("x", ElementType.UInt8, 2L, 16L, h, w);
        string Scalar(string name, float v) => g.Initializer(name, [], [v]);
        string Zero(string name, int v) => g.Raw<byte>(name, ElementType.UInt8, [], [(byte)v]);
        string Conv(string input, string sx, string zx, int cin, int cout, int size, int s, int group, string prefix)
        {
            var per = cin / group;
            var wq = g.Raw<sbyte>(prefix + "wq", ElementType.Int8, [cout, per, size, size], [.. Enumerable.Range(0, cout * per * size * size).Select(_ => (sbyte)rng.Next(-127, 128))]);
            var ws = g.Initializer(prefix + "ws", [cout], [.. Enumerable.Range(0, cout).Select(_ => (float)((group > 1 ? 0.02 : 0.002) + (rng.NextDouble() * 0.004)))]);
            var wz = g.Raw<sbyte>(prefix + "wz", ElementType.Int8, [cout], new sbyte[cout]);
            var b = g.Initializer(prefix + "b", [cout], [.. Enumerable.Range(0, cout).Select(_ => (float)(rng.NextDouble() - 0.3))]);
            var xd = g.Node("DequantizeLinear", [input, sx, zx]);
            var wd = g.Node("DequantizeLinear", [wq, ws, wz], GraphBuilder.Attr("axis", 0L));
            var pad = size / 2;
            return g.Node("Conv", [xd, wd, b], GraphBuilder.Attr("strides", s, s), GraphBuilder.Attr("kernel_shape", size, size), GraphBuilder.Attr("pads", pad, pad, pad, pad), GraphBuilder.Attr("group", (long)group));
        }

        string Relu6(string conv, string prefix, float firstScale, int firstZero, float low, float scale, int zero)
        {
            if (folded)
            {
                // What the engine computes: the Clip's bounds within the first QuantizeLinear's range, without its rounding.
                var (bottom, top) = (Math.Max(low, (0 - firstZero) * firstScale), Math.Min(6f, (255 - firstZero) * firstScale));
                return g.Node("QuantizeLinear", [g.Node("Clip", [conv, Scalar(prefix + "lo", bottom), Scalar(prefix + "hi", top)]), Scalar(prefix + "s2", scale), Zero(prefix + "z2", zero)]);
            }

            var (s1, z1) = (Scalar(prefix + "s1", firstScale), Zero(prefix + "z1", firstZero));
            var d = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [conv, s1, z1]), s1, z1]);
            return g.Node("QuantizeLinear", [g.Node("Clip", [d, Scalar(prefix + "lo", low), Scalar(prefix + "hi", 6f)]), Scalar(prefix + "s2", scale), Zero(prefix + "z2", zero)]);
        }

        var (xs, xz) = (Scalar("xs", 0.02f), Zero("xz", 125));
        var expanded = Relu6(Conv(x, xs, xz, 16, c, 1, 1, 1, "e"), "e", 0.05f, 120, 0, reluScale, reluZero);
        var (es, ez) = (Scalar("es", reluScale), Zero("ez", reluZero));
        var depthwise = Conv(expanded, es, ez, c, c, kernel, stride, c, "d");
        g.Rename(Relu6(depthwise, "d", 0.04f, 131, clipLow, clipLow < 0 ? 12f / 255 : 6f / 255, clipLow < 0 ? 128 : 0), "y");
        var o = ((h + (2 * (kernel / 2)) - kernel) / stride) + 1;
        var ow = ((w + (2 * (kernel / 2)) - kernel) / stride) + 1;
        g.Output("y", ElementType.UInt8, 2L, (long)c, o, ow);
        return g.Build("int8-depthwise");
    }

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs) =>
        new NoGpuTarget(Precision.Fp16) { Int8 = true, Int8Convolutions = Int8ConvChoice.Auto, Multiprocessors = 132 }.Compile(model, inputs);

    private static List<Tensor> Inputs(OnnxModel model)
    {
        var rng = new Random(5);
        var shape = model.Inputs[0].Shape.Select(d => (long)d.Value!).ToArray();
        var count = (int)shape.Aggregate(1L, (p, d) => p * d);
        return [Tensor.From<byte>(ElementType.UInt8, shape, [.. Enumerable.Range(0, count).Select(_ => (byte)rng.Next(0, 256))])];
    }

    [Theory]
    [InlineData(32, 3, 1, 6f / 255, 0)] // MobileNetV2's 3x3: two windows of four columns a row, the second output of each a byte later
    [InlineData(96, 3, 2, 6f / 255, 0)] // stride 2: a window for every output column
    [InlineData(48, 5, 1, 6f / 255, 0)] // EfficientNet's 5x5: two chunks a row (4 + 1 taps)
    [InlineData(32, 5, 2, 6f / 255, 0)] // 5x5 stride 2: a window a column and chunk
    [InlineData(32, 7, 1, 6f / 255, 0)] // ConvNeXt's 7x7: two chunks (4 + 3), eight input rows for two output rows
    [InlineData(64, 3, 1, 5f / 255, 0)] // the first Clip's top (6) above its QuantizeLinear's (5): the saturation gives it
    [InlineData(32, 3, 2, 12f / 255, 128, -1f)] // symmetric activations (zero 128): a ReLU at the real zero after the expansion; the output Clip's -1 as a clamp
    public void Depthwise_layers_and_their_relu6_run_int8_in_one_kernel_each_and_agree_with_onnx_runtime(int c, int kernel, int stride, float reluScale, int reluZero, float clipLow = 0)
    {
        CpuKernelRunner.Require();
        var model = Model(c, kernel, stride, reluScale, reluZero, clipLow);
        var inputs = Inputs(model);
        var plan = Plan(model, inputs);

        // The expansion (its ReLU6 folded) and the depthwise layer (its ReLU6 folded) are the plan's only kernels between
        // the input and the output: no pass makes a Clip's output int8 again.
        Assert.Single(plan.Steps, s => s.Node.Contains("own depthwise kernel", StringComparison.Ordinal));
        Assert.Single(plan.Steps, s => s.Node.Contains("own narrow pointwise kernel", StringComparison.Ordinal));
        Assert.DoesNotContain(plan.Steps, s => s.Node.Contains("Clip", StringComparison.Ordinal) || s.Node.Contains("DequantizeLinear", StringComparison.Ordinal));

        // Against ONNX Runtime on the folded model (the same arithmetic in float): a step off where a float rounding ties,
        // which the depthwise layer may carry a step further from its input.
        using var ort = new OrtEngine().Load(Model(c, kernel, stride, reluScale, reluZero, clipLow, folded: true), new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0].ToDoubles();
        CpuKernelRunner.Prepare([plan]);
        QuantizedBytes.AgreeWithinAStep(want, CpuKernelRunner.Run(plan, inputs)[0].ToDoubles(), oneIn: 50, distinct: 20, steps: 2);
    }

    [Fact]
    public void Skipping_the_first_rounding_moves_an_output_a_few_steps_from_the_qdq_reference_at_most()
    {
        // The model as written (both roundings) against the fold: the expansion's first QuantizeLinear is 2x coarser
        // than the Clip's, so its skipped rounding moves a depthwise input up to a step, and the output a few.
        CpuKernelRunner.Require();
        var model = Model(32, 3, 1, 6f / 255, 0);
        var inputs = Inputs(model);
        var plan = Plan(model, inputs);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0].AsSpan<byte>().ToArray();
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0].AsSpan<byte>().ToArray();
        var mean = Enumerable.Range(0, want.Length).Average(i => Math.Abs(want[i] - got[i]));
        Assert.True(mean < 1.5, $"outputs {mean:F2} steps from the QDQ reference on average");
    }

    [Fact]
    public void A_relu6_whose_first_quantization_saturates_below_the_second_is_a_clamp_the_own_kernels_apply()
    {
        // The depthwise output's first QuantizeLinear tops out at (255 - 131) * 0.04 = 4.96 while the Clip's
        // QuantizeLinear reaches 6: the fold keeps that saturation as the epilogue's clamp.
        var model = Model(32, 3, 1, 6f / 255, 0);
        var plan = Plan(model, Inputs(model));
        var depthwise = Assert.Single(plan.Steps.OfType<KernelStep>(), s => s.Node.Contains("own depthwise kernel", StringComparison.Ordinal));
        Assert.Contains("clamp_high", depthwise.Source, StringComparison.Ordinal);
    }

    [Fact]
    public void The_filter_is_laid_out_as_four_channels_row_chunks_with_zeros_past_the_window()
    {
        // Channel c, row r, column s holds 100c + 10r + s; a 5-wide window is two chunks a row (4 taps, then 1 and zeros).
        var bytes = KernelSource.Int8DepthwiseFilter((ch, r, s) => (sbyte)((10 * ch) + (3 * r) + s), 8, 2, 5);
        Assert.Equal(8 * 2 * 2 * 4, bytes.Length);
        Assert.Equal(new sbyte[] { 0, 1, 2, 3 }, bytes[0..4]); // group 0, row 0, chunk 0, channel 0
        Assert.Equal(new sbyte[] { 10, 11, 12, 13 }, bytes[4..8]); // channel 1
        Assert.Equal(new sbyte[] { 4, 0, 0, 0 }, bytes[16..20]); // chunk 1, channel 0: the fifth tap, then zeros
        Assert.Equal(new sbyte[] { 3, 4, 5, 6 }, bytes[32..36]); // row 1
        Assert.Equal(new sbyte[] { 40, 41, 42, 43 }, bytes[64..68]); // group 1: channel 4
    }
}
