using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// Fused elementwise kernels whose output or inputs are int8 (an int8 layer's input quantized from half, a residual
/// block's requantization of two int8 values) take 8 or 16 elements a thread: planned without a GPU, run on the CPU
/// through g++, against ONNX Runtime.
/// </summary>
public sealed class Int8ElementwiseOnCpuTests
{
    private static OnnxProto.NodeProto Node(string op, string output, params string[] inputs)
    {
        var n = new OnnxProto.NodeProto { OpType = op, Name = output };
        n.Input.AddRange(inputs);
        n.Output.Add(output);
        return n;
    }

    private static OnnxProto.ValueInfoProto Info(string name, ElementType type, long[] dims)
    {
        var info = new OnnxProto.ValueInfoProto { Name = name, Type = new OnnxProto.TypeProto { TensorType = new OnnxProto.TypeProto.Types.Tensor { ElemType = (int)type, Shape = new OnnxProto.TensorShapeProto() } } };
        info.Type.TensorType.Shape.Dim.AddRange(dims.Select(d => new OnnxProto.TensorShapeProto.Types.Dimension { DimValue = d }));
        return info;
    }

    /// <summary>
    /// a (uint8) and b (int8) dequantized, added, and quantized to int8: y = Q(DQ(a) + DQ(b)); and x (float) quantized
    /// to uint8 and back, times 2, quantized to int8: z = Q(2 DQ(Q(x))).
    /// </summary>
    private static OnnxModel Model(long[] shape)
    {
        var g = new OnnxProto.GraphProto { Name = "int8-elementwise" };
        void Scalar(string name, ElementType type, double value) => g.Initializer.Add((type == ElementType.Float ? HostTensor.OfFloats(type, [], [value]) : HostTensor.OfInts(type, [], [(long)value])).ToProto(name));
        Scalar("sa", ElementType.Float, 0.05);
        Scalar("za", ElementType.UInt8, 131);
        Scalar("sb", ElementType.Float, 0.03);
        Scalar("zb", ElementType.Int8, -5);
        Scalar("sy", ElementType.Float, 0.07);
        Scalar("zy", ElementType.Int8, 3);
        Scalar("two", ElementType.Float, 2);
        g.Node.Add(Node("DequantizeLinear", "ad", "a", "sa", "za"));
        g.Node.Add(Node("DequantizeLinear", "bd", "b", "sb", "zb"));
        g.Node.Add(Node("Add", "sum", "ad", "bd"));
        g.Node.Add(Node("QuantizeLinear", "y", "sum", "sy", "zy"));
        g.Node.Add(Node("QuantizeLinear", "xq", "x", "sa", "za"));
        g.Node.Add(Node("DequantizeLinear", "xd", "xq", "sa", "za"));
        g.Node.Add(Node("Mul", "x2", "xd", "two"));
        g.Node.Add(Node("QuantizeLinear", "z", "x2", "sy", "zy"));
        g.Input.Add(Info("a", ElementType.UInt8, shape));
        g.Input.Add(Info("b", ElementType.Int8, shape));
        g.Input.Add(Info("x", ElementType.Float, shape));
        g.Output.Add(Info("y", ElementType.Int8, shape));
        g.Output.Add(Info("z", ElementType.Int8, shape));
        var proto = new OnnxProto.ModelProto { IrVersion = 8, Graph = g };
        proto.OpsetImport.Add(new OnnxProto.OperatorSetIdProto { Domain = string.Empty, Version = 17 });
        return OnnxModel.FromProto(proto, "int8-elementwise");
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
