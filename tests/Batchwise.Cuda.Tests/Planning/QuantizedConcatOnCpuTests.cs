using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A Concat whose only reader is a QuantizeLinear (a QDQ model's Concat of dequantized parts, as YOLOv8's C2f and SPPF
/// blocks write it) quantizes each part straight into its slice. Planned without a GPU, run on the CPU through g++,
/// against ONNX Runtime.
/// </summary>
public sealed class QuantizedConcatOnCpuTests
{
    /// <summary>uint8 a [2, 8, 5, 6] and b [2, 16, 5, 6], each DequantizeLinear'd with its own scale, and a float c [2, 4, 5, 6] -> Concat (axis 1) -> QuantizeLinear.</summary>
    private static OnnxModel Model(ElementType type)
    {
        var g = new GraphBuilder("qdq-concat", seed: 2);
        string Dequantized(string name, long channels, float scale, byte zero)
        {
            var s = g.Initializer(name + "s", [], [scale]);
            var z = g.Raw<byte>(name + "z", ElementType.UInt8, [], [zero]);
            return g.Node("DequantizeLinear", [g.Input(name, ElementType.UInt8, 2L, channels, 5L, 6L), s, z]);
        }

        var parts = new[] { Dequantized("a", 8, 0.02f, 120), Dequantized("b", 16, 0.035f, 17), g.Input("c", ElementType.Float, 2L, 4L, 5L, 6L) };
        var zero = type == ElementType.UInt8 ? g.Raw<byte>("z", type, [], [(byte)40]) : g.Raw<sbyte>("z", type, [], [(sbyte)-88]);
        g.Rename(g.Node("QuantizeLinear", [g.Node("Concat", parts, GraphBuilder.Attr("axis", 1L)), g.Initializer("s", [], [0.03f]), zero]), "y");
        g.Output("y", type, 2L, 28L, 5L, 6L);
        return g.Build("qdq-concat");
    }

    [Theory]
    [InlineData(ElementType.UInt8, Precision.Fp16)]
    [InlineData(ElementType.Int8, Precision.Fp32)]
    public void A_concat_quantizes_each_part_into_its_slice_and_agrees_with_onnx_runtime(ElementType type, Precision precision)
    {
        CpuKernelRunner.Require();
        var model = Model(type);
        var rng = new Random(4);
        List<Tensor> inputs =
        [
            Tensor.From<byte>(ElementType.UInt8, [2, 8, 5, 6], [.. Enumerable.Range(0, 480).Select(_ => (byte)rng.Next(256))]),
            Tensor.From<byte>(ElementType.UInt8, [2, 16, 5, 6], [.. Enumerable.Range(0, 960).Select(_ => (byte)rng.Next(256))]),
            Tensor.From<float>(ElementType.Float, [2, 4, 5, 6], [.. Enumerable.Range(0, 240).Select(_ => (float)((rng.NextDouble() * 8) - 4))]),
        ];
        var plan = new NoGpuTarget(precision).Compile(model, inputs);
        var concat = plan.Steps.Where(s => s.Node.StartsWith("Concat", StringComparison.Ordinal)).Select(s => s.Node).ToList();
        // A kernel a part, into its slice (in half precision the float part arrives channels-last: quantized, brought to
        // the others' order, copied into its slice: three).
        Assert.True(concat.Count == (precision == Precision.Fp32 ? 3 : 5) && concat.All(n => n.EndsWith("+ QuantizeLinear", StringComparison.Ordinal)), string.Join(" // ", plan.Steps.Select(s => s.Node)));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("QuantizeLinear", StringComparison.Ordinal));

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0].ToDoubles();
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        QuantizedBytes.AgreeWithinAStep(want, got, precision == Precision.Fp32 ? 200 : 20, 60);
    }
}
