using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

/// <summary>A small model in ONNX Runtime's QOperator format, for the QDQ rewrite (linked into the cuda tests too).</summary>
internal static class QOperatorModels
{
    /// <summary>
    /// x float [2, 64, 6, 6] -> QuantizeLinear (uint8) -> QLinearConv 3x3 (64 -> 64, int8 weights per channel, int32 bias) = a
    /// -> QLinearConv 1x1 (64 -> 64, per-tensor weight scale, no bias) = b; QLinearAdd(a, b) -> QLinearGlobalAveragePool
    /// (both com.microsoft) -> DequantizeLinear = y [2, 64, 1, 1]. Channels of 64: the own int8 kernels take them.
    /// </summary>
    public static OnnxModel Classifier()
    {
        var rng = new Random(4);
        var g = new GraphBuilder("qop", seed: 1);
        var x = g.Input("x", ElementType.Float, 2L, 64L, 6L, 6L);
        string Scale(string name, float v) => g.Initializer(name, [], [v]);
        string Zero(string name, byte v) => g.Raw<byte>(name, ElementType.UInt8, [], [v]);
        sbyte[] Weights(int n) => [.. Enumerable.Range(0, n).Select(_ => (sbyte)rng.Next(-127, 128))];
        var (xs, xz) = (Scale("xs", 0.015f), Zero("xz", 128));
        var xq = g.Node("QuantizeLinear", [x, xs, xz]);

        var w1 = g.Raw<sbyte>("w1", ElementType.Int8, [64, 64, 3, 3], Weights(64 * 64 * 9));
        var w1s = g.Initializer("w1s", [64], [.. Enumerable.Range(0, 64).Select(_ => (float)(0.0003 + (rng.NextDouble() * 0.0006)))]);
        var w1z = g.Raw<sbyte>("w1z", ElementType.Int8, [64], new sbyte[64]);
        var b1 = g.Raw<int>("b1", ElementType.Int32, [64], [.. Enumerable.Range(0, 64).Select(_ => rng.Next(-20000, 20000))]);
        var (as_, az) = (Scale("as", 0.02f), Zero("az", 100));
        var a = g.Node("QLinearConv", [xq, xs, xz, w1, w1s, w1z, as_, az, b1], GraphBuilder.Attr("kernel_shape", 3L, 3L), GraphBuilder.Attr("pads", 1L, 1L, 1L, 1L));

        var w2 = g.Raw<sbyte>("w2", ElementType.Int8, [64, 64, 1, 1], Weights(64 * 64));
        var (bs, bz) = (Scale("bs", 0.03f), Zero("bz", 120));
        var b = g.Node("QLinearConv", [a, as_, az, w2, Scale("w2s", 0.001f), g.Raw<sbyte>("w2z", ElementType.Int8, [], [0]), bs, bz], GraphBuilder.Attr("kernel_shape", 1L, 1L));

        var (ss, sz) = (Scale("ss", 0.04f), Zero("sz", 90));
        var sum = g.Node("QLinearAdd", [a, as_, az, b, bs, bz, ss, sz]);
        var (ps, pz) = (Scale("ps", 0.01f), Zero("pz", 60));
        var pooled = g.Node("QLinearGlobalAveragePool", [sum, ss, sz, ps, pz], GraphBuilder.Attr("channels_last", 0L));
        g.Rename(g.Node("DequantizeLinear", [pooled, ps, pz]), "y");
        g.Output("y", ElementType.Float, 2L, 64L, 1L, 1L);
        var model = g.Build("qop", opset: 13);
        foreach (var n in model.Graph.Node.Where(n => n.OpType is "QLinearAdd" or "QLinearGlobalAveragePool"))
        {
            n.Domain = "com.microsoft";
        }

        model.Proto.OpsetImport.Add(new global::Onnx.OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        return model;
    }
}
