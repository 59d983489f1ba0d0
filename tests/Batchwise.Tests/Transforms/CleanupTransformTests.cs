using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Transforms;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

public sealed class CleanupTransformTests
{
    [Theory]
    [MemberData(nameof(TransformTestModels.Convolutional), MemberType = typeof(TransformTestModels))]
    public void Batchnorm_folding_removes_every_conv_bn_pair_and_preserves_outputs(string spec)
    {
        var (original, result) = TransformTestModels.CleanedUp(spec);
        Assert.True(TransformTestModels.Count(original, "BatchNormalization") > 0);
        Assert.Equal(0, TransformTestModels.Count(result, "BatchNormalization"));
        var agreement = Assert.Single(Verification.Compare(original, result));
        Assert.True(agreement.MaxAbsError < 1e-3 * Math.Max(1, Math.Abs(TransformTestModels.RunFirstOutput(original).ToDoubles().Max())), $"max abs err {agreement.MaxAbsError}");
        Assert.True(agreement.Cosine > 0.99999, $"cosine {agreement.Cosine}");
    }

    [Fact]
    public void Batchnorm_folding_leaves_a_bn_whose_conv_output_is_also_read_elsewhere()
    {
        var g = new GraphBuilder("shared");
        var x = g.Input("x", ElementType.Float, "batch", 4L, 8L, 8L);
        var c = g.Conv(x, 4, 4, 3);
        var bn = g.BatchNorm(c, 4);
        var sum = g.Node("Add", [bn, c]);
        g.Output(sum, ElementType.Float, "batch", 4L, 8L, 8L);
        var model = g.Build("shared");
        new BatchNormFolding().Apply(model);
        Assert.Equal(1, TransformTestModels.Count(model, "BatchNormalization"));
    }

    [Fact]
    public void Constant_folding_evaluates_constant_subgraphs_and_keeps_outputs()
    {
        var g = new GraphBuilder("consts");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        var a = g.Initializer("a", [4], [1f, 2f, 3f, 4f]);
        var constant = g.Node("Constant", [], GraphBuilder.Attr("value", Batchwise.Transforms.GraphSurgery.FloatTensor("v", [4], [10f, 20f, 30f, 40f])));
        var folded = g.Node("Mul", [g.Node("Add", [a, constant]), g.Scalar(2f)]);
        var y = g.Node("Add", [x, folded]);
        g.Output(y, ElementType.Float, "batch", 4L);
        var model = g.Build("consts");
        var before = TransformTestModels.RunFirstOutput(model).ToDoubles();

        var summary = new ConstantFolding().Apply(model);

        Assert.Contains("folded 2", summary, StringComparison.Ordinal);
        Assert.Equal(["Add"], model.Graph.Node.Select(n => n.OpType));
        Assert.Equal(before, TransformTestModels.RunFirstOutput(model).ToDoubles());
        var value = model.Graph.Initializer.Single(t => t.Name == folded).ToFloats();
        Assert.Equal([22f, 44f, 66f, 88f], value);
    }

    [Fact]
    public void Dead_node_removal_drops_unreachable_nodes_and_their_initializers()
    {
        var g = new GraphBuilder("dead");
        var x = g.Input("x", ElementType.Float, "batch", 4L);
        _ = g.Node("Mul", [x, g.Initializer("only_for_dead", [4], [1f, 2f, 3f, 4f])]); // its output goes nowhere
        var y = g.Node("Relu", [x]);
        g.Output(y, ElementType.Float, "batch", 4L);
        var model = g.Build("dead");

        new DeadNodeRemoval().Apply(model);

        Assert.Equal(["Relu"], model.Graph.Node.Select(n => n.OpType));
        Assert.DoesNotContain(model.Graph.Initializer, t => t.Name == "only_for_dead");
    }

    [Theory]
    [MemberData(nameof(TransformTestModels.All), MemberType = typeof(TransformTestModels))]
    public void Clean_up_keeps_every_zoo_model_running_with_the_same_outputs(string spec)
    {
        var (original, result) = TransformTestModels.CleanedUp(spec);
        using var session = new OrtEngine().Load(result, new EngineOptions());
        foreach (var a in Verification.Compare(original, result))
        {
            Assert.True(a.Cosine > 0.99999, $"{a.Output}: cosine {a.Cosine}");
        }
    }
}
