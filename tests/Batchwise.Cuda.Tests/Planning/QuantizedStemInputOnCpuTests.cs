using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A QDQ model's image input (input -> QuantizeLinear -> DequantizeLinear -> the stem convolution) enters a
/// half-precision plan in one kernel: converted, rounded by the pair and padded to 8 channels for the own stem kernel,
/// with no rounding pass and no padding copy after it. Planned without a GPU, run on the CPU through g++, against ONNX
/// Runtime in float32.
/// </summary>
public sealed class QuantizedStemInputOnCpuTests
{
    /// <summary>x [2, 3, 20, 24] -> Q/DQ (scale 2/255, zero point 127 uint8, or -1 int8; the DequantizeLinear's own zero point another one when <paramref name="otherZero"/>) -> Conv 3x3 pad 1, 16 outputs -> Relu.</summary>
    private static OnnxModel Model(ElementType zeroType, bool otherZero = false)
    {
        var g = new GraphBuilder("qdq-stem", seed: 4);
        var x = g.Input("x", ElementType.Float, 2L, 3L, 20L, 24L);
        var s = g.Initializer("s", [], [2f / 255]);
        string Zero(string name, int uint8, int int8) => zeroType == ElementType.UInt8 ? g.Raw<byte>(name, zeroType, [], [(byte)uint8]) : g.Raw<sbyte>(name, zeroType, [], [(sbyte)int8]);
        var z = Zero("z", 127, -1);
        var xd = g.Node("DequantizeLinear", [g.Node("QuantizeLinear", [x, s, z]), s, otherZero ? Zero("z2", 120, -3) : z]);
        var y = g.Node("Conv", [xd, g.Weight("w", [16, 3, 3, 3], 0.5f), g.Weight("b", [16], 0.05f)], GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L));
        g.Rename(g.Node("Relu", [y]), "r");
        g.Output("r", ElementType.Float, 2L, 16L, 20L, 24L);
        return g.Build("qdq-stem");
    }

    private static List<Tensor> Inputs()
    {
        var rng = new Random(8);
        return [Tensor.From<float>(ElementType.Float, [2, 3, 20, 24], [.. Enumerable.Range(0, 2 * 3 * 20 * 24).Select(_ => (float)((rng.NextDouble() * 2.4) - 1.2))])];
    }

    private static ExecutionPlan Plan(OnnxModel model, List<Tensor> inputs) =>
        new NoGpuTarget(Precision.Fp16, hostMatmuls: true) { StemConvolutions = StemConvChoice.Own, PlansConvolutionsWithoutLibrary = true }.Compile(model, inputs);

    [Theory]
    [InlineData(ElementType.UInt8)]
    [InlineData(ElementType.Int8)]
    public void The_input_is_rounded_and_padded_in_its_entry_kernel_and_the_stem_agrees_with_onnx_runtime(ElementType zeroType)
    {
        CpuKernelRunner.Require();
        var model = Model(zeroType);
        var inputs = Inputs();
        using var ort = new OrtEngine().Load(model, new EngineOptions { GraphOptimization = "disabled" });
        var expected = ort.Run(inputs);
        var plan = Plan(model, inputs);

        // The entry kernel rounds (saturating to the stored type's range), and nothing runs for the pair or pads after it.
        var entry = Assert.IsType<KernelStep>(plan.Steps[0]);
        Assert.Contains("rintf", entry.Source, StringComparison.Ordinal);
        Assert.Contains(zeroType == ElementType.UInt8 ? "255.0f" : "127.0f", entry.Source, StringComparison.Ordinal);
        Assert.DoesNotContain(plan.Steps, s => s.Node.Contains("QuantizeLinear", StringComparison.Ordinal) || s.Node.Contains("DequantizeLinear", StringComparison.Ordinal));
        Assert.Single(plan.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal));
        Assert.Contains("own conv kernel", Assert.Single(plan.Steps, s => s.Node.StartsWith("Conv", StringComparison.Ordinal)).Node, StringComparison.Ordinal);

        CpuKernelRunner.Prepare([plan]);
        var difference = KernelCaseModels.Difference(CpuKernelRunner.Run(plan, inputs), expected, half: true);
        Assert.True(difference is null, difference);
    }

    [Fact]
    public void An_optimized_resnet18s_input_whose_stem_filter_is_dequantized_enters_rounded_and_padded()
    {
        // `optimize --int8`'s model: the stem's filter is a DequantizeLinear of int8 initializers, not a float initializer.
        var plan = Plan(Int8PlanTests.QdqResnet18.Value, [Tensor.From<float>(ElementType.Float, [2, 3, 32, 32], new float[2 * 3 * 32 * 32])]);
        Assert.Contains("rintf", Assert.IsType<KernelStep>(plan.Steps[0]).Source, StringComparison.Ordinal);
        var stem = plan.Steps.TakeWhile(s => !s.Node.StartsWith("MaxPool", StringComparison.Ordinal)).Where(s => s.Node.StartsWith("Conv", StringComparison.Ordinal)).ToList();
        Assert.Contains("own conv kernel", Assert.Single(stem).Node, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pair_whose_zero_points_differ_is_not_folded_into_the_entry()
    {
        var plan = Plan(Model(ElementType.UInt8, otherZero: true), Inputs());
        Assert.DoesNotContain("rintf", Assert.IsType<KernelStep>(plan.Steps[0]).Source, StringComparison.Ordinal);
        Assert.True(plan.Steps.Count(s => s.Node.StartsWith("Conv", StringComparison.Ordinal)) > 1, "the pair's rounding and the padding run as kernels of their own before the stem");
    }
}
