using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Fused elementwise kernels whose output or inputs are int8 (an int8 layer's input quantized from half, a residual
/// block's requantization of two int8 values) take 8 or 16 elements a thread: planned without a GPU, run on the CPU
/// through g++, against ONNX Runtime.
/// </summary>
public sealed class Int8ElementwiseOnCpuTests
{
    /// <summary>
    /// a (uint8) and b (int8) dequantized, added, and quantized to int8: y = Q(DQ(a) + DQ(b)); and x (float) quantized
    /// to uint8 and back, times 2, quantized to int8: z = Q(2 DQ(Q(x))).
    /// </summary>
    private static OnnxModel Model(long[] shape)
    {
        var g = new GraphBuilder("int8-elementwise");
        var (a, b, x) = (g.Input("a", ElementType.UInt8, [.. shape.Cast<object>()]), g.Input("b", ElementType.Int8, [.. shape.Cast<object>()]), g.Input("x", ElementType.Float, [.. shape.Cast<object>()]));
        var (sa, sb, sy, two) = (g.Initializer("sa", [], [0.05f]), g.Initializer("sb", [], [0.03f]), g.Initializer("sy", [], [0.07f]), g.Initializer("two", [], [2f]));
        var za = g.Raw<byte>("za", ElementType.UInt8, [], [131]);
        var zb = g.Raw<sbyte>("zb", ElementType.Int8, [], [-5]);
        var zy = g.Raw<sbyte>("zy", ElementType.Int8, [], [3]);
        var sum = g.Node("Add", [g.Node("DequantizeLinear", [a, sa, za]), g.Node("DequantizeLinear", [b, sb, zb])]);
        g.Rename(g.Node("QuantizeLinear", [sum, sy, zy]), "y");
        var xd = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [x, sa, za]), sa, za]);
        g.Rename(g.Node("QuantizeLinear", [g.Node("Mul", [xd, two]), sy, zy]), "z");
        g.Output("y", ElementType.Int8, [.. shape.Cast<object>()]);
        g.Output("z", ElementType.Int8, [.. shape.Cast<object>()]);
        return g.Build("int8-elementwise");
    }

    [Theory]
    [InlineData(Precision.Fp32, 2, 5, 3, 32)]
    [InlineData(Precision.Fp16, 2, 5, 3, 32)]
    [InlineData(Precision.Fp16, 1, 3, 3, 7)]
    public void Int8_results_of_fused_kernels_match_onnx_runtime(Precision precision, long n, long c, long h, long w)
    {
        CpuKernelRunner.Require();
        long[] shape = [n, c, h, w];
        var count = (int)(n * c * h * w);
        var rng = new Random(3);
        List<Tensor> inputs =
        [
            Tensor.From<byte>(ElementType.UInt8, shape, [.. Enumerable.Range(0, count).Select(_ => (byte)rng.Next(0, 256))]),
            Tensor.From<sbyte>(ElementType.Int8, shape, [.. Enumerable.Range(0, count).Select(_ => (sbyte)rng.Next(-128, 128))]),
            // Values a quarter step off the grid: float and half round them alike.
            Tensor.From<float>(ElementType.Float, shape, [.. Enumerable.Range(0, count).Select(_ => (float)((rng.Next(-200, 200) + 0.25) * 0.05))]),
        ];
        var model = Model(shape);
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = new NoGpuTarget(precision).Compile(model, inputs);
        var actual = CpuKernelRunner.Run(plan, inputs);

        // The vectorized kernels are the ones this checks: where the row divides, every fused kernel takes 8 or 16.
        var fused = plan.Steps.OfType<KernelStep>().Where(k => k.Source.Contains("for (int j = 0; j <", StringComparison.Ordinal)).ToList();
        if (w % 16 == 0)
        {
            Assert.NotEmpty(fused);
        }

        for (var o = 0; o < 2; o++)
        {
            var (want, got) = (expected[o].AsSpan<sbyte>().ToArray(), actual[o].AsSpan<sbyte>().ToArray());
            var differ = Enumerable.Range(0, count).Where(i => want[i] != got[i]).ToList();
            Assert.True(differ.Count == 0, $"output {o}: {differ.Count} of {count} differ, first at {differ.FirstOrDefault()}: {got[differ.FirstOrDefault()]} where ONNX Runtime gives {want[differ.FirstOrDefault()]}");
        }
    }
}
