using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>A small MLP: features → hidden (Relu) → classes (Softmax).</summary>
internal static class Mlp
{
    public static OnnxModel Build(ZooOptions o)
    {
        int features = o.Int("features"), hidden = o.Int("hidden"), classes = o.Int("classes");
        var g = o.CreateBuilder("mlp");
        var x = g.Input("input", ElementType.Float, "batch", (long)features);
        var w1 = g.Weight("fc1.weight", [hidden, features], 1f / MathF.Sqrt(features));
        var b1 = g.Weight("fc1.bias", [hidden], 0.1f);
        var h = g.Node("Gemm", [x, w1, b1], GraphBuilder.Attr("transB", 1L));
        h = g.Node("Relu", [h]);
        var w2 = g.Weight("fc2.weight", [classes, hidden], 1f / MathF.Sqrt(hidden));
        var b2 = g.Weight("fc2.bias", [classes], 0.1f);
        var logits = g.Node("Gemm", [h, w2, b2], GraphBuilder.Attr("transB", 1L));
        var probs = g.Rename(g.Node("Softmax", [logits], GraphBuilder.Attr("axis", 1L)), "probabilities");
        g.Output(probs, ElementType.Float, "batch", (long)classes);
        return g.Build("mlp");
    }
}
