using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A LayerNormalization whose only reader is a QuantizeLinear (a QDQ transformer's LayerNorm before its int8 projections)
/// writes the quantized bytes itself: planned without a GPU, run on the CPU through g++, against ONNX Runtime.
/// </summary>
public sealed class QuantizedLayerNormOnCpuTests
{
    /// <summary>x [2, 5, 64] -> LayerNormalization (scale, bias) -> QuantizeLinear (scale 0.03) = q, an output; and DequantizeLinear(q) + x = r.</summary>
    private static OnnxModel Model(ElementType type)
    {
        var g = new GraphBuilder("qdq-layernorm", seed: 6);
        var x = g.Input("x", ElementType.Float, 2L, 5L, 64L);
        var s = g.Initializer("s", [], [0.03f]);
        var z = type == ElementType.UInt8 ? g.Raw<byte>("z", type, [], [(byte)131]) : g.Raw<sbyte>("z", type, [], [(sbyte)-4]);
        var ln = g.Node("LayerNormalization", [x, g.Weight("gamma", [64], 1f), g.Weight("beta", [64], 0.5f)], GraphBuilder.Attr("axis", -1L));
        var q = g.Node("QuantizeLinear", [ln, s, z]);
        g.Rename(q, "q");
        g.Rename(g.Node("Add", [g.Node("DequantizeLinear", ["q", s, z]), x]), "r");
        g.Output("q", type, 2L, 5L, 64L);
        g.Output("r", ElementType.Float, 2L, 5L, 64L);
        return g.Build("qdq-layernorm");
    }

    [Theory]
    [InlineData(ElementType.UInt8, Precision.Fp32)]
    [InlineData(ElementType.Int8, Precision.Fp32)]
    [InlineData(ElementType.UInt8, Precision.Fp16)]
    public void The_layernorm_writes_its_quantizelinears_bytes_and_agrees_with_onnx_runtime(ElementType type, Precision precision)
    {
        CpuKernelRunner.Require();
        var model = Model(type);
        var rng = new Random(2);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [2, 5, 64], [.. Enumerable.Range(0, 640).Select(_ => (float)((rng.NextDouble() * 4) - 2))])];
        var plan = new NoGpuTarget(precision).Compile(model, inputs);
        Assert.Single(plan.Steps, s => s.Node.Contains("LayerNormalization", StringComparison.Ordinal) && s.Node.Contains("+ QuantizeLinear", StringComparison.Ordinal));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("QuantizeLinear", StringComparison.Ordinal));

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs);
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs);
        var (w, g) = (want[0].ToDoubles(), got[0].ToDoubles());
        QuantizedBytes.AgreeWithinAStep(w, g, precision == Precision.Fp32 ? 100 : 10, 40);

        // The residual reads the quantized value back: within a step of the scale (and float16's rounding) of ORT's.
        var (wr, gr) = (want[1].ToDoubles(), got[1].ToDoubles());
        Assert.All(Enumerable.Range(0, wr.Length), i => Assert.True(Math.Abs(wr[i] - gr[i]) <= 0.031 + (precision == Precision.Fp16 ? 0.01 : 1e-5), $"r {i}: {gr[i]} against {wr[i]}"));
    }
}
