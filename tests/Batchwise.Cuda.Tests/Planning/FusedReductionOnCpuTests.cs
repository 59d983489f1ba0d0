using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A reduction of a QDQ model's DequantizeLinear (ResNet's global pooling, a squeeze-excite mean) reads the int8 bytes
/// and dequantizes each as it loads it: no step writes the float16 value first. Planned without a GPU, run on the CPU
/// through g++, against ONNX Runtime.
/// </summary>
public sealed class FusedReductionOnCpuTests
{
    /// <summary>
    /// x uint8 [n, 64, h, w] -> DQ -> Conv 1x1 (64 -> 128, int8 weights per channel) -> Q = a (the int8 path writes it
    /// channels-last); DQ(a) -> GlobalAveragePool = y, DQ(a) -> ReduceMean over H, W (kept) = m, DQ(a) -> GlobalMaxPool = g.
    /// </summary>
    private static OnnxModel Model(long n, long h, long w)
    {
        var rng = new Random(3);
        var g = new GraphBuilder("qdq-pool", seed: 1);
        var x = g.Input("x", ElementType.UInt8, n, 64L, h, w);
        var (xs, xz) = (g.Initializer("xs", [], [0.02f]), g.Raw<byte>("xz", ElementType.UInt8, [], [(byte)7]));
        var wq = g.Raw<sbyte>("wq", ElementType.Int8, [128, 64, 1, 1], [.. Enumerable.Range(0, 128 * 64).Select(_ => (sbyte)rng.Next(-127, 128))]);
        var ws = g.Initializer("ws", [128], [.. Enumerable.Range(0, 128).Select(_ => (float)(0.0003 + (rng.NextDouble() * 0.0006)))]);
        var wz = g.Raw<sbyte>("wz", ElementType.Int8, [128], new sbyte[128]);
        var b = g.Initializer("b", [128], [.. Enumerable.Range(0, 128).Select(_ => (float)(rng.NextDouble() - 0.5))]);
        var conv = g.Node("Conv", [g.Node("DequantizeLinear", [x, xs, xz]), g.Node("DequantizeLinear", [wq, ws, wz], GraphBuilder.Attr("axis", 0L)), b], GraphBuilder.Attr("kernel_shape", 1L, 1L));
        var (s, z) = (g.Initializer("s", [], [0.05f]), g.Raw<byte>("z", ElementType.UInt8, [], [(byte)90]));
        var a = g.Node("QuantizeLinear", [conv, s, z]);
        g.Rename(g.Node("GlobalAveragePool", [g.Node("DequantizeLinear", [a, s, z])]), "y");
        g.Rename(g.Node("ReduceMean", [g.Node("DequantizeLinear", [a, s, z])], GraphBuilder.Attr("axes", 2L, 3L)), "m");
        g.Rename(g.Node("GlobalMaxPool", [g.Node("DequantizeLinear", [a, s, z])]), "g");
        g.Output("y", ElementType.Float, n, 128L, 1L, 1L);
        g.Output("m", ElementType.Float, n, 128L, 1L, 1L);
        g.Output("g", ElementType.Float, n, 128L, 1L, 1L);
        return g.Build("qdq-pool", opset: 13);
    }

    /// <summary>x uint8 [2, 8, 5, 6] -> DQ -> GlobalAveragePool = y: an NCHW input, reduced a row per channel.</summary>
    private static OnnxModel RowModel()
    {
        var g = new GraphBuilder("qdq-rows", seed: 1);
        var x = g.Input("x", ElementType.UInt8, 2L, 8L, 5L, 6L);
        g.Rename(g.Node("GlobalAveragePool", [g.Node("DequantizeLinear", [x, g.Initializer("xs", [], [0.03f]), g.Raw<byte>("xz", ElementType.UInt8, [], [(byte)100])])]), "y");
        g.Output("y", ElementType.Float, 2L, 8L, 1L, 1L);
        return g.Build("qdq-rows", opset: 13);
    }

    private static List<Tensor> Bytes(OnnxModel model)
    {
        var rng = new Random(9);
        var shape = model.Inputs[0].Shape.Select(d => (long)d.Value!).ToArray();
        var count = (int)shape.Aggregate(1L, (p, d) => p * d);
        return [Tensor.From<byte>(ElementType.UInt8, shape, [.. Enumerable.Range(0, count).Select(_ => (byte)rng.Next(0, 256))])];
    }

    private static void AgreesWithOnnxRuntime(OnnxModel model, ExecutionPlan plan, List<Tensor> inputs, double tolerance)
    {
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs);
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs);
        for (var o = 0; o < want.Count; o++)
        {
            var (w, r) = (want[o].ToDoubles(), got[o].ToDoubles());
            Assert.Equal(w.Length, r.Length);
            Assert.True(w.Distinct().Count() > Math.Min(16, w.Length / 2), $"output {o} is nearly constant: the case checks nothing");
            Assert.All(Enumerable.Range(0, w.Length), i => Assert.True(Math.Abs(w[i] - r[i]) <= tolerance * (1 + Math.Abs(w[i])), $"output {o} [{i}]: {r[i]} where ONNX Runtime gives {w[i]}"));
        }
    }

    [Theory]
    [InlineData(Precision.Fp16, 2, 5, 6, 1)]
    [InlineData(Precision.Fp32, 2, 5, 6, 1)]
    [InlineData(Precision.Fp16, 1, 16, 16, 2)] // 256 pixels of one image: the reduced axis split in ranges, then finished
    public void Pooling_and_means_of_an_int8_activation_read_its_bytes_and_agree_with_onnx_runtime(Precision precision, long n, long h, long w, int kernels)
    {
        CpuKernelRunner.Require();
        var model = Model(n, h, w);
        var inputs = Bytes(model);
        var plan = new NoGpuTarget(precision) { Int8 = true, Int8Convolutions = Int8ConvChoice.Own }.Compile(model, inputs);

        // Each reads the 8-bit activation (its stored bytes, signed: the uint8 shifted by 128), eight bytes a lane, no
        // DequantizeLinear written first: one kernel, or a kernel over ranges of the reduced axis and one finishing them.
        foreach (var op in new[] { "GlobalAveragePool", "ReduceMean", "GlobalMaxPool" })
        {
            var steps = plan.Steps.Where(s => s.Node.StartsWith(op, StringComparison.Ordinal)).ToList();
            Assert.Equal(kernels, steps.Count);
            var first = Assert.IsType<KernelStep>(steps[0], exactMatch: false);
            Assert.Contains("const signed char* __restrict__ x", first.Source, StringComparison.Ordinal);
            Assert.Contains("signed char v[8]", first.Source, StringComparison.Ordinal);
        }

        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("DequantizeLinear", StringComparison.Ordinal));
        AgreesWithOnnxRuntime(model, plan, inputs, precision == Precision.Fp16 ? 2e-3 : 1e-5);
    }

    [Fact]
    public void A_global_pooling_of_dequantized_rows_reads_the_bytes_a_warp_a_row()
    {
        CpuKernelRunner.Require();
        var model = RowModel();
        var inputs = Bytes(model);
        var plan = new NoGpuTarget(Precision.Fp16).Compile(model, inputs);
        var pool = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith("GlobalAveragePool", StringComparison.Ordinal)), exactMatch: false);
        Assert.Contains("const unsigned char* __restrict__ x", pool.Source, StringComparison.Ordinal);
        AgreesWithOnnxRuntime(model, plan, inputs, 2e-3);
    }

    /// <summary>
    /// A squeeze-excite block as EfficientNet exports it: s = SiLU(depthwise 3x3 (x) + bias) [2, 32, 9, 9]; m = ReduceMean(s)
    /// over H and W (kept); y = s * Sigmoid(m).
    /// </summary>
    private static OnnxModel SqueezeExcite()
    {
        var rng = new Random(2);
        var g = new GraphBuilder("se", seed: 1);
        var x = g.Input("x", ElementType.Float, 2L, 32L, 9L, 9L);
        var w = g.Initializer("w", [32, 1, 3, 3], [.. Enumerable.Range(0, 32 * 9).Select(_ => (float)(rng.NextDouble() - 0.5))]);
        var b = g.Initializer("b", [32], [.. Enumerable.Range(0, 32).Select(_ => (float)(rng.NextDouble() - 0.5))]);
        var d = g.Node("Conv", [x, w, b], GraphBuilder.Attr("group", 32L), GraphBuilder.Attr("kernel_shape", 3L, 3L), GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L));
        var silu = g.Node("Mul", [d, g.Node("Sigmoid", [d])]);
        var mean = g.Node("ReduceMean", [silu], GraphBuilder.Attr("axes", 2L, 3L));
        g.Rename(g.Node("Mul", [silu, g.Node("Sigmoid", [mean])]), "y");
        g.Output("y", ElementType.Float, 2L, 32L, 9L, 9L);
        return g.Build("se", opset: 13);
    }

    [Fact]
    public void A_squeeze_excite_mean_reads_the_depthwise_output_through_its_silu()
    {
        CpuKernelRunner.Require();
        var model = SqueezeExcite();
        var rng = new Random(6);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [2, 32, 9, 9], [.. Enumerable.Range(0, 2 * 32 * 81).Select(_ => (float)((rng.NextDouble() * 4) - 2))])];
        var plan = new NoGpuTarget(Precision.Fp16).Compile(model, inputs);

        // The depthwise kernel adds its bias, so the SiLU is a chain over its output alone, which the mean reads through
        // (one kernel, no SiLU written for it); the product with the gate is written by the output's steps.
        var depthwise = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal)), exactMatch: false);
        Assert.Contains("bias[ch + u]", depthwise.Source, StringComparison.Ordinal);
        var mean = Assert.IsType<KernelStep>(Assert.Single(plan.Steps, s => s.Node.StartsWith("ReduceMean", StringComparison.Ordinal)), exactMatch: false);
        Assert.Contains("xe =", mean.Source, StringComparison.Ordinal);
        Assert.Equal(["input x", "Conv 'conv'", "ReduceMean 'reducemean'"], plan.Steps.Select(s => s.Node).Where(n => !n.StartsWith("output", StringComparison.Ordinal)));
        AgreesWithOnnxRuntime(model, plan, inputs, 4e-3);
    }
}
