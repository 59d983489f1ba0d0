using Batchwise.Cuda.Planning;
using Batchwise.Cuda.Tests.Operators;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// A QDQ model's image input (input -> QuantizeLinear -> DequantizeLinear -> the stem convolution) enters a
/// half-precision plan in one kernel: converted, rounded by the pair and padded to 8 channels for the own stem kernel,
/// with no rounding pass and no padding copy after it. Planned without a GPU, run on the CPU through g++, against ONNX
/// Runtime in float32.
/// </summary>
public sealed class QuantizedStemInputOnCpuTests
{
    private static OnnxProto.NodeProto Node(string op, string output, params string[] inputs)
    {
        var n = new OnnxProto.NodeProto { OpType = op, Name = output };
        n.Input.AddRange(inputs);
        n.Output.Add(output);
        return n;
    }

    private static OnnxProto.ValueInfoProto Info(string name, params long[] dims)
    {
        var info = new OnnxProto.ValueInfoProto { Name = name, Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)ElementType.Float, Shape = new OnnxProto.TensorShapeProto() } } };
        info.Type.TensorType.Shape.Dim.AddRange(dims.Select(d => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = d }));
        return info;
    }

    /// <summary>x [2, 3, 20, 24] -> Q/DQ (scale 2/255, zero point 127 uint8, or -1 int8) [-> Q/DQ again when <paramref name="otherZero"/>] -> Conv 3x3 pad 1, 16 outputs -> Relu.</summary>
    private static OnnxModel Model(ElementType zeroType, bool otherZero = false)
    {
        var rng = new Random(4);
        var g = new OnnxProto.GraphProto { Name = "qdq-stem" };
        g.Initializer.Add(HostTensor.OfFloats(ElementType.Float, [], [2.0 / 255]).ToProto("s"));
        g.Initializer.Add(HostTensor.OfInts(zeroType, [], [zeroType == ElementType.UInt8 ? 127 : -1]).ToProto("z"));
        g.Initializer.Add(HostTensor.OfInts(zeroType, [], [zeroType == ElementType.UInt8 ? 120 : -3]).ToProto("z2"));
        g.Initializer.Add(HostTensor.OfFloats(ElementType.Float, [16, 3, 3, 3], [.. Enumerable.Range(0, 16 * 27).Select(_ => rng.NextDouble() - 0.5)]).ToProto("w"));
        g.Initializer.Add(HostTensor.OfFloats(ElementType.Float, [16], [.. Enumerable.Range(0, 16).Select(_ => (rng.NextDouble() - 0.5) * 0.1)]).ToProto("b"));
        g.Node.Add(Node("QuantizeLinear", "xq", "x", "s", "z"));
        g.Node.Add(Node("DequantizeLinear", "xd", "xq", "s", otherZero ? "z2" : "z"));
        var conv = Node("Conv", "y", "xd", "w", "b");
        conv.Attribute.Add(new OnnxProto.AttributeProto { Name = "pads", Type = OnnxProto.AttributeProto.Types.AttributeType.Ints, Ints = { 1, 1, 1, 1 } });
        g.Node.Add(conv);
        g.Node.Add(Node("Relu", "r", "y"));
        g.Input.Add(Info("x", 2, 3, 20, 24));
        g.Output.Add(Info("r", 2, 16, 20, 24));
        var proto = new OnnxProto.ModelProto { IrVersion = 8, Graph = g };
        proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = 17 });
        return OnnxModel.FromProto(proto, "qdq-stem");
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
    public void A_pair_whose_zero_points_differ_is_not_folded_into_the_entry()
    {
        var plan = Plan(Model(ElementType.UInt8, otherZero: true), Inputs());
        Assert.DoesNotContain("rintf", Assert.IsType<KernelStep>(plan.Steps[0]).Source, StringComparison.Ordinal);
        Assert.True(plan.Steps.Count(s => s.Node.StartsWith("Conv", StringComparison.Ordinal)) > 1, "the pair's rounding and the padding run as kernels of their own before the stem");
    }
}
