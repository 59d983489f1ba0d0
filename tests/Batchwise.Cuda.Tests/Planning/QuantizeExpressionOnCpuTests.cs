using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A per-tensor QuantizeLinear with constants as the engine's elementwise chains compute it (bw_quantize: the quotient
/// from the reciprocal with one correction, clamped, rounded by two float adds), run on the CPU with g++
/// (<see cref="CpuKernelRunner"/>) against ONNX Runtime on the values where a shortcut would differ: ties, quotients a
/// hair either side of one, saturation, infinities, NaN and values past the reciprocal's range.
/// </summary>
public sealed class QuantizeExpressionOnCpuTests
{
    [Theory]
    [InlineData(ElementType.UInt8, 0.1f, 3)]
    [InlineData(ElementType.Int8, 0.0235294122f, -5)]
    [InlineData(ElementType.UInt16, 0.003f, 30000)]
    [InlineData(ElementType.Int16, 1.7e-5f, 0)]
    public void A_quantize_linear_in_a_chain_rounds_and_saturates_as_onnx_runtime(ElementType type, float scale, int zero)
    {
        CpuKernelRunner.Require();
        var values = new List<float> { 0, -0f, 1e30f, -1e30f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.MaxValue, -float.MaxValue, 1e-40f };
        for (var k = -300; k <= 300; k++)
        {
            // k + 1/2 steps (a tie, rounded to even), and the floats either side of k steps and of the tie.
            var tie = (k + 0.5f) * scale;
            var whole = k * scale;
            values.AddRange([tie, MathF.BitIncrement(tie), MathF.BitDecrement(tie), whole, MathF.BitIncrement(whole), MathF.BitDecrement(whole), k * 97.3f * scale]);
        }

        var g = new GraphBuilder("quantize-chain");
        var x = g.Input("x", ElementType.Float, (long)values.Count);
        var zp = type switch
        {
            ElementType.UInt8 => g.Raw<byte>("z", type, [], [(byte)zero]),
            ElementType.Int8 => g.Raw<sbyte>("z", type, [], [(sbyte)zero]),
            ElementType.UInt16 => g.Raw<ushort>("z", type, [], [(ushort)zero]),
            _ => g.Raw<short>("z", type, [], [(short)zero]),
        };
        g.Rename(g.Node("QuantizeLinear", [g.Node("Neg", [g.Node("Neg", [x])]), g.Initializer("s", [], [scale]), zp]), "y"); // after a chain, as in a QDQ model
        g.Output("y", type, (long)values.Count);
        var model = g.Build("quantize-chain", opset: 21);
        List<Tensor> inputs = [Tensor.From<float>(ElementType.Float, [values.Count], [.. values])];
        var plan = new NoGpuTarget(Precision.Fp32).Compile(model, inputs);
        Assert.Contains(plan.Steps.OfType<KernelStep>(), s => s.Source.Contains("bw_quantize(", StringComparison.Ordinal));

        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var want = ort.Run(inputs)[0].ToDoubles();
        CpuKernelRunner.Prepare([plan]);
        var got = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        var differ = Enumerable.Range(0, want.Length).Where(i => want[i] != got[i]).ToList();
        Assert.True(differ.Count == 0, $"{differ.Count} of {want.Length} differ; first x = {(differ.Count > 0 ? values[differ[0]] : 0):R}: {(differ.Count > 0 ? got[differ[0]] : 0)} where ONNX Runtime gives {(differ.Count > 0 ? want[differ[0]] : 0)}");
    }
}
