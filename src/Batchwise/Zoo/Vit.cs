using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>
/// A ViT image classifier as torch/timm export it: patch-embedding Conv, class token expanded to the batch (Shape,
/// Gather, Unsqueeze, Concat, Expand), position embeddings, pre-norm encoder layers (LayerNorm, attention with MatMul
/// and Softmax, GELU MLP), the class token's LayerNorm and a linear head. At opset 11 LayerNorm is decomposed as
/// exporters write it; GELU is the Erf form at every opset below 20.
/// </summary>
internal static class Vit
{
    public static ZooEntry Entry { get; } = new(
        "vit",
        "ViT classifier: patch-embedding Conv, attention (MatMul, Softmax), LayerNorm, GELU -> logits",
        new Dictionary<string, string>
        {
            ["size"] = "32",
            ["patch"] = "8",
            ["hidden"] = "64",
            ["layers"] = "2",
            ["heads"] = "4",
            ["mlp"] = "128",
            ["classes"] = "10",
            ["opset"] = "17",
            ["seed"] = "0",
        },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        var (height, width) = o.ImageSize("size", 1);
        int patch = o.Int("patch"), hidden = o.Int("hidden"), layers = o.Int("layers"), heads = o.Int("heads"), mlp = o.Int("mlp"), classes = o.Int("classes");
        if (height % patch != 0 || width % patch != 0)
        {
            throw new BatchwiseException($"vit needs a size divisible by patch={patch}, got size={height}x{width}", $"Use e.g. size={Math.Max(patch, height / patch * patch)}.");
        }

        if (hidden % heads != 0)
        {
            throw new BatchwiseException($"vit needs hidden divisible by heads, got hidden={hidden}, heads={heads}", "Use e.g. hidden=64&heads=4.");
        }

        long d = hidden, headSize = hidden / heads, tokens = (height / patch * (width / patch)) + 1;
        var g = o.CreateBuilder("vit");
        var pixels = g.Input("pixel_values", ElementType.Float, "batch", 3L, (long)height, (long)width);

        // Patch embedding: [batch, D, h, w] -> [batch, D, N] -> [batch, N, D].
        var patches = g.Conv(pixels, 3, d, patch, patch, bias: true, name: "embeddings.patch_embeddings.projection", padding: 0, gain: 1f);
        patches = g.Node("Transpose", [g.Node("Reshape", [patches, g.Int64s("embeddings.flatten", [0, d, -1])])], GraphBuilder.Attr("perm", 0L, 2L, 1L));

        // Class token expanded to the batch as the exporter writes cls_token.expand(B, -1, -1).
        var batch = g.Unsqueeze(g.Node("Gather", [g.Node("Shape", [pixels]), g.Int64s("embeddings.batch_index", [0], [])], GraphBuilder.Attr("axis", 0L)), 0);
        var expandShape = g.Node("Concat", [batch, g.Int64s("embeddings.cls_rest", [1, d])], GraphBuilder.Attr("axis", 0L));
        var cls = g.Node("Expand", [g.Weight("embeddings.cls_token", [1, 1, d], 0.02f * MathF.Sqrt(3f)), expandShape]);
        var x = g.Node("Concat", [cls, patches], GraphBuilder.Attr("axis", 1L));
        x = g.Node("Add", [x, g.Weight("embeddings.position_embeddings", [1, tokens, d], 0.02f * MathF.Sqrt(3f))]);

        var splitHeads = g.Int64s("attention.split_heads", [0, 0, heads, headSize]);
        var mergeHeads = g.Int64s("attention.merge_heads", [0, 0, d]);
        var scale = g.Scalar(1f / MathF.Sqrt(headSize));
        for (var layer = 0; layer < layers; layer++)
        {
            var p = $"encoder.layer.{layer}";
            var h = g.LayerNormOrDecomposed(x, d, p + ".layernorm_before");
            var q = g.Node("Transpose", [g.Node("Reshape", [g.Linear(h, d, d, p + ".attention.query"), splitHeads])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
            var k = g.Node("Transpose", [g.Node("Reshape", [g.Linear(h, d, d, p + ".attention.key"), splitHeads])], GraphBuilder.Attr("perm", 0L, 2L, 3L, 1L));
            var v = g.Node("Transpose", [g.Node("Reshape", [g.Linear(h, d, d, p + ".attention.value"), splitHeads])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
            var probs = g.Softmax(g.Node("Mul", [g.Node("MatMul", [q, k]), scale]), -1, 4);
            var context = g.Node("Reshape", [g.Node("Transpose", [g.Node("MatMul", [probs, v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L)), mergeHeads]);
            x = g.Node("Add", [g.Linear(context, d, d, p + ".attention.output"), x]);

            h = g.LayerNormOrDecomposed(x, d, p + ".layernorm_after");
            h = g.Linear(g.Gelu(g.Linear(h, d, mlp, p + ".intermediate")), mlp, d, p + ".output");
            x = g.Node("Add", [h, x]);
        }

        // The class token's features: LayerNorm, Gather token 0, linear head.
        x = g.LayerNormOrDecomposed(x, d, "layernorm");
        var first = g.Node("Gather", [x, g.Int64s("classifier.token", [0], [])], GraphBuilder.Attr("axis", 1L));
        var logits = g.Rename(g.Linear(first, d, classes, "classifier"), "logits");
        g.Output(logits, ElementType.Float, "batch", (long)classes);
        return g.Build("vit");
    }
}
