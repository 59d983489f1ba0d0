using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>A BERT-base-style encoder as Hugging Face exports BertModel (without the pooler): embeddings, post-LayerNorm transformer layers, GELU (Erf form).</summary>
internal static class Bert
{
    private const int MaxPositions = 512;
    private const int TokenTypes = 2;

    public static ZooEntry Entry { get; } = new(
        "bert",
        "BERT-base-style encoder: input_ids, attention_mask -> last_hidden_state",
        new Dictionary<string, string> { ["seq"] = "128", ["layers"] = "12", ["hidden"] = "768", ["heads"] = "12", ["vocab"] = "30522", ["seed"] = "0" },
        Build);

    private static OnnxModel Build(ZooOptions o)
    {
        int seq = o.Int("seq"), layers = o.Int("layers"), hidden = o.Int("hidden"), heads = o.Int("heads"), vocab = o.Int("vocab", 2);
        if (seq > MaxPositions)
        {
            throw new BatchwiseException($"bert has {MaxPositions} position embeddings; seq={seq} is longer", $"Use seq={MaxPositions} or less.");
        }

        if (hidden % heads != 0)
        {
            throw new BatchwiseException($"bert needs hidden divisible by heads, got hidden={hidden}, heads={heads}", "Use e.g. hidden=768&heads=12.");
        }

        long h = hidden, headSize = hidden / heads;
        var g = o.CreateBuilder("bert");
        var ids = g.Input("input_ids", ElementType.Int64, "batch", (long)seq);
        var mask = g.Input("attention_mask", ElementType.Int64, "batch", (long)seq);

        // Embeddings: word + position + token type (all type 0), then LayerNorm. Std 0.02 as BERT initialises them.
        var embScale = 0.02f * MathF.Sqrt(3f);
        var word = g.Node("Gather", [g.Weight("embeddings.word_embeddings.weight", [vocab, h], embScale), ids]);
        var positions = g.Int64s("embeddings.position_ids", [.. Enumerable.Range(0, seq).Select(i => (long)i)]);
        var position = g.Node("Gather", [g.Weight("embeddings.position_embeddings.weight", [MaxPositions, h], embScale), positions]);
        var tokenTypes = g.Int64s("embeddings.token_type_ids", new long[seq]);
        var tokenType = g.Node("Gather", [g.Weight("embeddings.token_type_embeddings.weight", [TokenTypes, h], embScale), tokenTypes]);
        var x = g.LayerNorm(g.Node("Add", [g.Node("Add", [word, position]), tokenType]), h, "embeddings.LayerNorm");

        // Additive mask: (1 - mask) * -10000, shaped [batch, 1, 1, seq] to broadcast over heads and query positions.
        var maskFloat = g.Node("Cast", [mask], GraphBuilder.Attr("to", (long)ElementType.Float));
        var additive = g.Node("Mul", [g.Node("Sub", [g.Scalar(1f), maskFloat]), g.Scalar(-10000f)]);
        additive = g.Node("Unsqueeze", [additive, g.Int64s("mask.axes", [1, 2])]);

        var splitHeads = g.Int64s("attention.split_heads", [0, 0, heads, headSize]);
        var mergeHeads = g.Int64s("attention.merge_heads", [0, 0, h]);
        var scale = g.Scalar(MathF.Sqrt(headSize));
        for (var layer = 0; layer < layers; layer++)
        {
            var p = $"encoder.layer.{layer}";
            var q = g.Node("Transpose", [g.Node("Reshape", [g.Linear(x, h, h, p + ".attention.self.query"), splitHeads])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
            var k = g.Node("Transpose", [g.Node("Reshape", [g.Linear(x, h, h, p + ".attention.self.key"), splitHeads])], GraphBuilder.Attr("perm", 0L, 2L, 3L, 1L));
            var v = g.Node("Transpose", [g.Node("Reshape", [g.Linear(x, h, h, p + ".attention.self.value"), splitHeads])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
            var scores = g.Node("Add", [g.Node("Div", [g.Node("MatMul", [q, k]), scale]), additive]);
            var probs = g.Node("Softmax", [scores], GraphBuilder.Attr("axis", -1L));
            var context = g.Node("Transpose", [g.Node("MatMul", [probs, v])], GraphBuilder.Attr("perm", 0L, 2L, 1L, 3L));
            context = g.Node("Reshape", [context, mergeHeads]);
            var attention = g.Linear(context, h, h, p + ".attention.output.dense");
            x = g.LayerNorm(g.Node("Add", [attention, x]), h, p + ".attention.output.LayerNorm");

            var inner = Gelu(g, g.Linear(x, h, 4 * h, p + ".intermediate.dense"));
            var output = g.Linear(inner, 4 * h, h, p + ".output.dense");
            x = g.LayerNorm(g.Node("Add", [output, x]), h, p + ".output.LayerNorm");
        }

        var last = g.Rename(g.Node("Identity", [x]), "last_hidden_state");
        g.Output(last, ElementType.Float, "batch", (long)seq, h);
        return g.Build("bert");
    }

    // GELU, exact form: 0.5 * x * (1 + erf(x / sqrt(2))).
    private static string Gelu(GraphBuilder g, string x)
    {
        var erf = g.Node("Erf", [g.Node("Div", [x, g.Scalar(MathF.Sqrt(2f))])]);
        return g.Node("Mul", [g.Node("Mul", [x, g.Node("Add", [erf, g.Scalar(1f)])]), g.Scalar(0.5f)]);
    }
}
