using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Planning;

/// <summary>
/// The fused attention kernel writing the QuantizeLinear that alone reads its output (through the Transpose and Reshape
/// that merge the heads: a QDQ transformer's attention before its int8 output projection). Planned without a GPU, run on
/// the CPU through g++ (the tensor-core products emulated), against the same plan's float16 output quantized on the host.
/// </summary>
public sealed class QuantizedAttentionOnCpuTests
{
    /// <summary>BERT's attention ([2, 2, 20, 16] per operand, a padding mask), O -> Transpose(0, 2, 1, 3) -> Reshape [2, 20, 32] [-> QuantizeLinear].</summary>
    private static OnnxModel Model(ElementType? quantized)
    {
        var g = new GraphBuilder("attention_q", 17);
        var q = g.Input("q", ElementType.Float, 2L, 2L, 20L, 16L);
        var kt = g.Input("kt", ElementType.Float, 2L, 2L, 16L, 20L);
        var v = g.Input("v", ElementType.Float, 2L, 2L, 20L, 16L);
        var mask = g.Input("mask", ElementType.Float, 2L, 1L, 1L, 20L);
        var probs = g.Node("Softmax", [g.Node("Add", [g.Node("Div", [g.Node("MatMul", [q, kt]), g.Scalar(4f)]), mask])], GraphBuilder.Attr("axis", 3L));
        var merged = g.Node("Reshape", [g.Node("Transpose", [g.Node("MatMul", [probs, v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L)), g.Int64s("to", [2L, 20L, 32L])]);
        if (quantized is { } type)
        {
            var zero = type == ElementType.UInt8 ? g.Raw<byte>("z", type, [], [(byte)130]) : g.Raw<sbyte>("z", type, [], [(sbyte)3]);
            g.Output(g.Rename(g.Node("QuantizeLinear", [merged, g.Initializer("s", [], [0.012f]), zero]), "y"), type, 2L, 20L, 32L);
        }
        else
        {
            g.Output(g.Rename(merged, "y"), ElementType.Float, 2L, 20L, 32L);
        }

        return g.Build("attention_q");
    }

    [Theory]
    [InlineData(ElementType.UInt8)]
    [InlineData(ElementType.Int8)]
    public void The_attention_kernel_writes_its_quantizelinears_bytes_from_the_float16_values_it_would_write(ElementType type)
    {
        CpuKernelRunner.Require();
        var model = Model(type);
        var inputs = AttentionPlanTests.Inputs(model, 7);
        var plan = AttentionPlanTests.Compile(Precision.Fp16, model, inputs);
        Assert.Single(plan.Steps, s => s.Node.Contains("fused attention", StringComparison.Ordinal) && s.Node.Contains("QuantizeLinear", StringComparison.Ordinal));
        Assert.DoesNotContain(plan.Steps, s => s.Node.StartsWith("QuantizeLinear", StringComparison.Ordinal) || s.Node.StartsWith("Reshape", StringComparison.Ordinal));

        var got = CpuKernelRunner.Run(plan, inputs)[0].ToDoubles();
        var plain = Model(null);
        var halves = CpuKernelRunner.Run(AttentionPlanTests.Compile(Precision.Fp16, plain, inputs), inputs)[0].AsSpan<float>().ToArray();
        var (zero, low, high) = type == ElementType.UInt8 ? (130f, 0f, 255f) : (3f, -128f, 127f);
        var want = halves.Select(h => (double)Math.Clamp(MathF.Round(h / 0.012f, MidpointRounding.ToEven) + zero, low, high)).ToArray();
        Assert.Equal(want, got);
        Assert.True(want.Distinct().Count() > 40, "the bytes are nearly constant: the case checks nothing");

        // And within a step of ONNX Runtime's float32 attention.
        var ort = DataDependentPlanTests.OnOnnxRuntime(model, [.. inputs])[0].ToDoubles();
        Assert.All(Enumerable.Range(0, ort.Length), i => Assert.True(Math.Abs(ort[i] - got[i]) <= 1, $"byte {i}: {got[i]} where ONNX Runtime gives {ort[i]}"));
    }
}
