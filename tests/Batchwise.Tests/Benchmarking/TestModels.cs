using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Benchmarking;

/// <summary>Small models built in code for benchmarking tests.</summary>
internal static class TestModels
{
    public const int Vocabulary = 500;

    /// <summary>Token ids (int64 [batch, seq]) into a 500-row embedding, an int64 attention mask and a bool flag input.</summary>
    public static OnnxModel Tokens()
    {
        var g = new GraphBuilder("tokens", 3);
        var ids = g.Input("input_ids", ElementType.Int64, "batch", "seq");
        var mask = g.Input("attention_mask", ElementType.Int64, "batch", "seq");
        var flag = g.Input("flag", ElementType.Bool, "batch", 4L);
        var emb = g.Weight("embeddings", [Vocabulary, 8], 1f);
        var hidden = g.Node("Gather", [emb, ids]);
        var m = g.Node("Cast", [mask], GraphBuilder.Attr("to", (long)ElementType.Float));
        m = g.Node("Unsqueeze", [m, g.Int64s("axes", [-1])]);
        var masked = g.Rename(g.Node("Mul", [hidden, m]), "hidden");
        g.Output(masked, ElementType.Float, "batch", "seq", 8L);
        var f = g.Rename(g.Node("Cast", [flag], GraphBuilder.Attr("to", (long)ElementType.Float)), "flag_out");
        g.Output(f, ElementType.Float, "batch", 4L);
        return g.Build("tokens");
    }

    /// <summary>A model whose batch dimension is fixed at 1 in the file.</summary>
    public static OnnxModel FixedBatch()
    {
        var g = new GraphBuilder("fixed", 0);
        var x = g.Input("x", ElementType.Float, 1L, 4L);
        var y = g.Rename(g.Node("Relu", [x]), "y");
        g.Output(y, ElementType.Float, 1L, 4L);
        return g.Build("fixed");
    }

    /// <summary>An int32 input that indexes nothing: no range to infer.</summary>
    public static OnnxModel PlainInt32()
    {
        var g = new GraphBuilder("ints", 0);
        var x = g.Input("codes", ElementType.Int32, "batch", 6L);
        var y = g.Rename(g.Node("Abs", [x]), "y");
        g.Output(y, ElementType.Int32, "batch", 6L);
        return g.Build("ints");
    }
}
