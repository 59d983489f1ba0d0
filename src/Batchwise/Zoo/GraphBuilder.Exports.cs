namespace Batchwise.Zoo;

/// <summary>
/// Layers written as torch.onnx.export writes them at the builder's <see cref="GraphBuilder.Opset"/>: axes as attributes
/// before opset 13 (18 for ReduceMean) and as inputs after, LayerNormalization decomposed before opset 17, Resize with
/// an roi input before 13, softmax over a middle axis transposed to the last before 13.
/// </summary>
public sealed partial class GraphBuilder
{
    /// <summary>Unsqueeze with axes as an attribute (opset &lt; 13) or an input.</summary>
    public string Unsqueeze(string x, params long[] axes) =>
        Opset < 13 ? Node("Unsqueeze", [x], Attr("axes", axes)) : Node("Unsqueeze", [x, Int64s("unsqueeze.axes", axes)]);

    /// <summary>Squeeze with axes as an attribute (opset &lt; 13) or an input.</summary>
    public string Squeeze(string x, params long[] axes) =>
        Opset < 13 ? Node("Squeeze", [x], Attr("axes", axes)) : Node("Squeeze", [x, Int64s("squeeze.axes", axes)]);

    /// <summary>ReduceMean with axes as an attribute (opset &lt; 18) or an input.</summary>
    public string ReduceMean(string x, long[] axes, bool keepDims = true) =>
        Opset < 18
            ? Node("ReduceMean", [x], Attr("axes", axes), Attr("keepdims", keepDims ? 1L : 0L))
            : Node("ReduceMean", [x, Int64s("reducemean.axes", axes)], Attr("keepdims", keepDims ? 1L : 0L));

    /// <summary>LayerNormalization over the last axis: the operator from opset 17, before it the exporter's decomposition (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add).</summary>
    public string LayerNormOrDecomposed(string x, long features, string name, float epsilon = 1e-6f)
    {
        if (Opset >= 17)
        {
            return LayerNorm(x, features, name, epsilon);
        }

        var scale = Uniform(name + ".weight", [features], 0.9f, 1.1f);
        var shift = Uniform(name + ".bias", [features], -0.05f, 0.05f);
        var centred = Node("Sub", [x, ReduceMean(x, [-1])]);
        var variance = ReduceMean(Node("Pow", [centred, Scalar(2f)]), [-1]);
        var normalised = Node("Div", [centred, Node("Sqrt", [Node("Add", [variance, Scalar(epsilon)])])]);
        return Node("Add", [Node("Mul", [normalised, scale]), shift]);
    }

    /// <summary>GELU in its exact (Erf) form, as exporters write it before the Gelu operator (opset 20): 0.5 * x * (1 + erf(x / sqrt(2))).</summary>
    public string Gelu(string x)
    {
        var erf = Node("Erf", [Node("Div", [x, Scalar(MathF.Sqrt(2f))])]);
        return Node("Mul", [Node("Mul", [x, Node("Add", [erf, Scalar(1f)])]), Scalar(0.5f)]);
    }

    /// <summary>Softmax along an axis: the operator's own axis from opset 13; before, over a middle axis, Transpose it last, Softmax, Transpose back (torch's export: opset 11 Softmax flattens to 2-D).</summary>
    public string Softmax(string x, long axis, int rank)
    {
        var a = axis < 0 ? axis + rank : axis;
        if (Opset >= 13 || a == rank - 1)
        {
            return Node("Softmax", [x], Attr("axis", Opset >= 13 ? axis : a));
        }

        var perm = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        (perm[a], perm[rank - 1]) = (perm[rank - 1], perm[a]);
        var moved = Node("Transpose", [x], Attr("perm", perm));
        return Node("Transpose", [Node("Softmax", [moved], Attr("axis", (long)(rank - 1)))], Attr("perm", perm));
    }

    /// <summary>Nearest-neighbour upsampling by an integer factor (Resize, asymmetric, floor), with an empty roi input before opset 13.</summary>
    public string Upsample(string x, int factor)
    {
        var roi = Opset < 13 ? Initializer("resize.roi", [0], []) : string.Empty;
        return Node(
            "Resize",
            [x, roi, Initializer("resize.scales", [4], [1f, 1f, factor, factor])],
            Attr("mode", "nearest"),
            Attr("coordinate_transformation_mode", "asymmetric"),
            Attr("nearest_mode", "floor"));
    }

    /// <summary>ConvTranspose with a He-uniform weight [in, out, k, k]; output size (in - 1) * stride - 2 * padding + kernel.</summary>
    public string ConvTranspose(string x, long inChannels, long outChannels, long kernel, long stride, long padding = 0, bool bias = true, string name = "deconv")
    {
        var fanIn = inChannels * kernel * kernel / (stride * stride);
        var w = Weight(name + ".weight", [inChannels, outChannels, kernel, kernel], MathF.Sqrt(6f / Math.Max(1, fanIn)));
        string[] inputs = bias ? [x, w, Weight(name + ".bias", [outChannels], 0.05f)] : [x, w];
        return Node("ConvTranspose", inputs, Attr("kernel_shape", kernel, kernel), Attr("strides", stride, stride), Attr("pads", padding, padding, padding, padding));
    }

    /// <summary>A (bidirectional) LSTM over x [T, batch, input] with gates in ONNX's iofc order; returns Y [T, directions, batch, hidden].</summary>
    public string Lstm(string x, long inputSize, long hidden, bool bidirectional, string name = "lstm")
    {
        long directions = bidirectional ? 2 : 1;
        var scale = 1f / MathF.Sqrt(hidden);
        var w = Weight(name + ".weight_ih", [directions, 4 * hidden, inputSize], scale);
        var r = Weight(name + ".weight_hh", [directions, 4 * hidden, hidden], scale);
        var b = Weight(name + ".bias", [directions, 8 * hidden], scale);
        return Node("LSTM", [x, w, r, b], Attr("hidden_size", hidden), Attr("direction", bidirectional ? "bidirectional" : "forward"));
    }
}
