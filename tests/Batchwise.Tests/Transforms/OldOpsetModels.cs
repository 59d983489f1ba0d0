using Batchwise.Onnx;
using Batchwise.Zoo;

namespace Batchwise.Tests.Transforms;

/// <summary>Small models built at old opsets with the operators whose signature changed since (as old exporters wrote them).</summary>
internal static class OldOpsetModels
{
    /// <summary>Opset 7: Upsample with scales as an attribute (nearest and linear), BatchNormalization with `spatial`, Dropout with a ratio, Clip with attributes, Softmax coerced to 2-D.</summary>
    public static OnnxModel Opset7()
    {
        var g = new GraphBuilder("opset7", seed: 7);
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        var y = g.Conv(x, 3, 8, 3, bias: true);
        y = Bn(g, y, 8, spatial: true);
        y = g.Node("Clip", [y], GraphBuilder.Attr("min", 0f), GraphBuilder.Attr("max", 6f));
        var near = g.Node("Upsample", [y], GraphBuilder.Attr("mode", "nearest"), ScalesAttr(1f, 1f, 2f, 2f));
        var lin = g.Node("Upsample", [y], GraphBuilder.Attr("mode", "linear"), ScalesAttr(1f, 1f, 2f, 2f));
        var sum = g.Node("Add", [near, lin]);
        var dropped = g.NodeN("Dropout", [sum], 2, GraphBuilder.Attr("ratio", 0.25f))[0];
        var probs = g.Node("Softmax", [dropped], GraphBuilder.Attr("axis", 1L));
        g.Output(g.Rename(probs, "probs"), ElementType.Float, "batch", 8L, 16L, 16L);
        g.Output(g.Rename(sum, "features"), ElementType.Float, "batch", 8L, 16L, 16L);
        return g.Build("opset7", opset: 7);
    }

    /// <summary>Opset 9: Upsample with a scales input, Pad/Slice/Split/Squeeze/Unsqueeze/Reduce*/TopK with attributes, Softmax/LogSoftmax/Hardmax coerced to 2-D, Max/Min/Sum/Mean with broadcasting, Gemm, Cast.</summary>
    public static OnnxModel Opset9()
    {
        var g = new GraphBuilder("opset9", seed: 9);
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        var y = g.Conv(x, 3, 8, 3, bias: true);
        y = Bn(g, y, 8, spatial: false);
        y = g.Node("Clip", [y], GraphBuilder.Attr("min", -1f), GraphBuilder.Attr("max", 4f));
        y = g.Node("Upsample", [y, g.Initializer("scales", [4], [1f, 1f, 2f, 2f])], GraphBuilder.Attr("mode", "nearest"));
        y = g.MaxPool(y, 2, 2, 0);
        y = g.Node("Pad", [y], GraphBuilder.Attr("pads", 0L, 0L, 1L, 2L, 0L, 0L, 1L, 0L), GraphBuilder.Attr("value", 0.5f));
        y = g.Node("Slice", [y], GraphBuilder.Attr("starts", 1L, 0L), GraphBuilder.Attr("ends", 9L, 1000L), GraphBuilder.Attr("axes", 2L, 3L));
        var parts = g.NodeN("Split", [y], 2, GraphBuilder.Attr("axis", 1L), GraphBuilder.Attr("split", 3L, 5L));

        var pooled = g.Node("ReduceMean", [parts[0]], GraphBuilder.Attr("axes", 2L, 3L), GraphBuilder.Attr("keepdims", 1L));
        var flat = g.Node("Squeeze", [pooled], GraphBuilder.Attr("axes", 2L, 3L));
        var summed = g.Node("ReduceSum", [parts[0]], GraphBuilder.Attr("axes", [2L]), GraphBuilder.Attr("keepdims", 0L));
        var peak = g.Node("ReduceMax", [summed], GraphBuilder.Attr("axes", [-1L]), GraphBuilder.Attr("keepdims", 0L));
        var mixed = g.Node("Mean", [g.Node("Max", [flat, peak]), g.Node("Min", [flat, g.Scalar(0.1f)]), g.Node("Sum", [flat, peak, g.Scalar(1f)])]);
        var logits = g.Gemm(mixed, 3, 6, "fc");
        var top = g.NodeN("TopK", [logits], 2, GraphBuilder.Attr("k", 3L));
        var expanded = g.Node("Unsqueeze", [top[0]], GraphBuilder.Attr("axes", [1L]));

        var coerced = g.Node("Softmax", [parts[1]], GraphBuilder.Attr("axis", 1L));
        var logProbs = g.Node("LogSoftmax", [parts[1]], GraphBuilder.Attr("axis", 2L));
        var hard = g.Node("Hardmax", [g.Node("Cast", [logits], GraphBuilder.Attr("to", (long)ElementType.Float))]);

        g.Output(g.Rename(coerced, "softmax"), ElementType.Float, "batch", 5L, 8L, 10L);
        g.Output(g.Rename(logProbs, "log_softmax"), ElementType.Float, "batch", 5L, 8L, 10L);
        g.Output(g.Rename(hard, "hardmax"), ElementType.Float, "batch", 6L);
        g.Output(g.Rename(expanded, "top_values"), ElementType.Float, "batch", 1L, 3L);
        g.Output(g.Rename(top[1], "top_indices"), ElementType.Int64, "batch", 3L);
        return g.Build("opset9", opset: 9);
    }

    /// <summary>Opset 10: Resize-10 (nearest up, linear down), Slice and TopK with inputs, Dropout with a ratio attribute, Scatter (replaced by ScatterElements at 11).</summary>
    public static OnnxModel Opset10()
    {
        var g = new GraphBuilder("opset10", seed: 10);
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        var y = g.Conv(x, 3, 4, 3, bias: true);
        var up = g.Node("Resize", [y, g.Initializer("up", [4], [1f, 1f, 2f, 2f])], GraphBuilder.Attr("mode", "nearest"));
        var down = g.Node("Resize", [up, g.Initializer("down", [4], [1f, 1f, 0.5f, 0.5f])], GraphBuilder.Attr("mode", "linear"));
        var cut = g.Node("Slice", [down, g.Int64s("starts", [1]), g.Int64s("ends", [7]), g.Int64s("axes", [3])]);
        var dropped = g.NodeN("Dropout", [cut], 1, GraphBuilder.Attr("ratio", 0.1f))[0];
        var flat = g.Node("Flatten", [dropped], GraphBuilder.Attr("axis", 1L));
        var top = g.NodeN("TopK", [flat, g.Int64s("k", [5])], 2, GraphBuilder.Attr("axis", -1L));
        var scattered = g.Node("Scatter", [up, g.Int64s("indices", [0, 3, 2, 1], [1, 1, 1, 4]), g.Initializer("updates", [1, 1, 1, 4], [9f, 8f, 7f, 6f])], GraphBuilder.Attr("axis", 3L));
        g.Output(g.Rename(up, "upsampled"), ElementType.Float, "batch", 4L, 16L, 16L);
        g.Output(g.Rename(dropped, "cropped"), ElementType.Float, "batch", 4L, 8L, 6L);
        g.Output(g.Rename(top[0], "top_values"), ElementType.Float, "batch", 5L);
        g.Output(g.Rename(scattered, "scattered"), ElementType.Float, "batch", 4L, 16L, 16L);
        return g.Build("opset10", opset: 10);
    }

    /// <summary>Opset 11: Resize-11 with an roi input, Clip and Pad with inputs, Split/Squeeze/Unsqueeze/ReduceSum axes as attributes, Softmax over a middle axis of a rank-3 tensor, an equal Split without sizes.</summary>
    public static OnnxModel Opset11()
    {
        var g = new GraphBuilder("opset11", seed: 11);
        var x = g.Input("x", ElementType.Float, "batch", 3L, 8L, 8L);
        var y = g.Conv(x, 3, 6, 3, bias: true);
        y = g.Node("Clip", [y, g.Scalar(-2f), g.Scalar(2f)]);
        y = g.Node(
            "Resize",
            [y, g.Initializer("roi", [0], []), g.Initializer("scales", [4], [1f, 1f, 2f, 2f])],
            GraphBuilder.Attr("mode", "nearest"),
            GraphBuilder.Attr("coordinate_transformation_mode", "asymmetric"),
            GraphBuilder.Attr("nearest_mode", "floor"));
        y = g.Node("Pad", [y, g.Int64s("pads", [0, 0, 1, 1, 0, 0, 1, 1]), g.Scalar(0.25f)], GraphBuilder.Attr("mode", "constant"));
        var parts = g.NodeN("Split", [y], 3, GraphBuilder.Attr("axis", 1L), GraphBuilder.Attr("split", 2L, 2L, 2L));
        var rows = g.Node("ReduceSum", [parts[0]], GraphBuilder.Attr("axes", [3L]), GraphBuilder.Attr("keepdims", 1L));
        var seq = g.Node("Squeeze", [rows], GraphBuilder.Attr("axes", [3L]));
        var probs = g.Node("Softmax", [seq], GraphBuilder.Attr("axis", 1L));
        var back = g.Node("Unsqueeze", [probs], GraphBuilder.Attr("axes", [-1L]));
        var scattered = g.Node("ScatterElements", [parts[1], g.Int64s("indices", [0, 1, 1, 0], [1, 1, 2, 2]), g.Initializer("updates", [1, 1, 2, 2], [9f, 8f, 7f, 6f])], GraphBuilder.Attr("axis", 2L));
        var halves = g.NodeN("Split", [parts[2]], 2, GraphBuilder.Attr("axis", 2L));
        g.Output(g.Rename(back, "probs"), ElementType.Float, "batch", 2L, 18L, 1L);
        g.Output(g.Rename(scattered, "scattered"), ElementType.Float, "batch", 2L, 18L, 18L);
        g.Output(g.Rename(halves[1], "half"), ElementType.Float, "batch", 2L, 9L, 18L);
        return g.Build("opset11", opset: 11);
    }

    // Opset 7 BatchNormalization carries `spatial` (removed at 9).
    private static string Bn(GraphBuilder g, string x, long channels, bool spatial)
    {
        var scale = g.Uniform("bn.weight", [channels], 0.8f, 1.2f);
        var shift = g.Uniform("bn.bias", [channels], -0.1f, 0.1f);
        var mean = g.Uniform("bn.mean", [channels], -0.1f, 0.1f);
        var variance = g.Uniform("bn.var", [channels], 0.8f, 1.2f);
        return spatial
            ? g.Node("BatchNormalization", [x, scale, shift, mean, variance], GraphBuilder.Attr("epsilon", 1e-5f), GraphBuilder.Attr("spatial", 1L))
            : g.Node("BatchNormalization", [x, scale, shift, mean, variance], GraphBuilder.Attr("epsilon", 1e-5f));
    }

    private static global::Onnx.AttributeProto ScalesAttr(params float[] scales)
    {
        var a = new global::Onnx.AttributeProto { Name = "scales", Type = global::Onnx.AttributeProto.Types.AttributeType.Floats };
        a.Floats.AddRange(scales);
        return a;
    }
}
