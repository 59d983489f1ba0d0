using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

public sealed class EinsumDecompositionTests
{
    public static TheoryData<string, object[], object[]?, object[]> Forms() => new()
    {
        { "bij,bjk->bik", ["batch", 3L, 4L], ["batch", 4L, 5L], ["batch", 3L, 5L] },
        { "bhqd,bhkd->bhqk", ["batch", 2L, 3L, 4L], ["batch", 2L, 5L, 4L], ["batch", 2L, 3L, 5L] },
        { "bhqk,bhkd->bhqd", ["batch", 2L, 3L, 5L], ["batch", 2L, 5L, 4L], ["batch", 2L, 3L, 4L] },
        { "bnd,dh->bnh", ["batch", 3L, 4L], [4L, 6L], ["batch", 3L, 6L] },
        { "bqd,bkd->bkq", ["batch", 3L, 4L], ["batch", 5L, 4L], ["batch", 5L, 3L] },
        { "ij,jk", ["batch", 4L], [4L, 5L], ["batch", 5L] },
        { "...ij,...jk->...ik", ["batch", 3L, 4L], ["batch", 4L, 2L], ["batch", 3L, 2L] },
        { "abc->cab", ["batch", 3L, 4L], null, [4L, "batch", 3L] },
    };

    [Theory]
    [MemberData(nameof(Forms))]
    public void The_einsum_forms_exports_use_become_transpose_and_matmul_with_the_same_outputs_in_onnx_runtime(string equation, object[] left, object[]? right, object[] output)
    {
        var original = Build(equation, left, right, output);
        var rewritten = OnnxModel.FromProto(original.Proto.Clone(), original.Name);
        var summary = new EinsumDecomposition().Apply(rewritten);

        Assert.Contains("rewrote 1 Einsum", summary, StringComparison.Ordinal);
        Assert.DoesNotContain(rewritten.Graph.Node, n => n.OpType == "Einsum");
        Assert.All(rewritten.Graph.Node, n => Assert.Contains(n.OpType, new[] { "Transpose", "MatMul", "Identity" }));
        Assert.Equal(right is null ? 0 : 1, rewritten.Graph.Node.Count(n => n.OpType == "MatMul"));
        OpsetConversionTests.AssertSameOutputs(original, rewritten, tolerance: 1e-5);
    }

    [Theory]
    [InlineData("ii->i", "a diagonal")]
    [InlineData("ij->i", "sums over a label")]
    [InlineData("ij,jk,k->i", "3 operands")]
    public void Other_forms_are_kept_and_named_with_the_reason(string equation, string reason)
    {
        object[][] shapes = equation.Split("->")[0].Split(',').Select(t => (object[])[.. t.Select(_ => (object)3L)]).ToArray();
        var g = new GraphBuilder("einsum");
        var inputs = shapes.Select((s, i) => g.Input($"x{i}", ElementType.Float, s)).ToArray();
        var node = g.Node("Einsum", inputs, GraphBuilder.Attr("equation", equation));
        g.Output(node, ElementType.Float, 3L);
        var model = g.Build("einsum", opset: 17);

        var summary = new EinsumDecomposition().Apply(model);

        Assert.Contains("rewrote 0", summary, StringComparison.Ordinal);
        Assert.Contains(reason, summary, StringComparison.Ordinal);
        Assert.Single(model.Graph.Node, n => n.OpType == "Einsum");
    }

    private static OnnxModel Build(string equation, object[] left, object[]? right, object[] output)
    {
        var g = new GraphBuilder("einsum");
        string[] inputs = right is null ? [g.Input("a", ElementType.Float, left)] : [g.Input("a", ElementType.Float, left), g.Input("b", ElementType.Float, right)];
        g.Output(g.Node("Einsum", inputs, GraphBuilder.Attr("equation", equation)), ElementType.Float, output);
        return g.Build("einsum", opset: 17);
    }
}
