using System.Globalization;
using Batchwise.Cuda.Tests.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>The fused attention kernel on the GPU (tensor cores) against ONNX Runtime in float32, at test and at model sizes.</summary>
[Trait("Category", "GPU")]
public sealed class AttentionGpuTests
{
    public static TheoryData<string> Cases() => new(["vit", "bert", "rank3", "vit_s", "bert_base_masked", "head128"]);

    private static OnnxModel Case(string name) => name switch
    {
        "vit_s" => Sdpa(8, 6, 197, 197, 64, mask: false),
        "bert_base_masked" => Sdpa(4, 12, 128, 128, 64, mask: true),
        "head128" => Sdpa(2, 4, 100, 300, 128, mask: true),
        _ => AttentionPlanTests.Case(name),
    };

    /// <summary>Q [b, h, sq, d], K [b, h, sk, d] transposed in the graph, V [b, h, sk, d], scale 1/sqrt(d), optional mask [b, 1, 1, sk].</summary>
    private static OnnxModel Sdpa(long b, long h, long sq, long sk, long d, bool mask)
    {
        var g = new GraphBuilder("sdpa", 3);
        var q = g.Input("q", ElementType.Float, b, h, sq, d);
        var k = g.Input("k", ElementType.Float, b, h, sk, d);
        var v = g.Input("v", ElementType.Float, b, h, sk, d);
        var scores = g.Node("Mul", [g.Node("MatMul", [q, g.Node("Transpose", [k], GraphBuilder.Attr("perm", 0L, 1L, 3L, 2L))]), g.Scalar(1f / MathF.Sqrt(d))]);
        if (mask)
        {
            scores = g.Node("Add", [scores, g.Input("mask", ElementType.Float, b, 1L, 1L, sk)]);
        }

        g.Output(g.Rename(g.Node("MatMul", [g.Node("Softmax", [scores], GraphBuilder.Attr("axis", -1L)), v]), "y"), ElementType.Float, b, h, sq, d);
        return g.Build("sdpa");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fused_attention_in_fp16_matches_onnx_runtime_fp32(string name)
    {
        Gpu.Require();
        var model = Case(name);
        var inputs = AttentionPlanTests.Inputs(model, 11);
        using var ort = new OrtEngine().Load(model, new EngineOptions());
        using var cuda = new CudaEngine().Load(model, new EngineOptions { Precision = Precision.Fp16 });
        var expected = ort.Run(inputs);
        var actual = cuda.Run(inputs);
        foreach (var r in Gpu.Compare(actual, expected, model.Outputs))
        {
            Gpu.Report("attention.md", string.Create(CultureInfo.InvariantCulture, $"| {name} | {r.Name} | {r.MaxAbs:E2} | {r.MaxRel:E2} | {r.Cosine:F7} |"));
            Assert.True(r.Cosine >= 0.9995 && r.MaxAbs <= 3e-2, $"{name}/{r.Name}: cosine {r.Cosine}, max abs error {r.MaxAbs}");
        }
    }
}
