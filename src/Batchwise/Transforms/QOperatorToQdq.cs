using Batchwise.Onnx;
using Batchwise.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>
/// Rewrites a QOperator-format model (ONNX Runtime's quantizer with QuantFormat.QOperator, the ONNX model zoo's int8
/// classifiers) in QDQ form: QLinearConv becomes DequantizeLinear (input, weight) -> Conv (its int32 bias as the float
/// bias B·x_scale·w_scale[c]) -> QuantizeLinear, and ONNX Runtime's QLinearAdd and QLinearGlobalAveragePool
/// (com.microsoft) become DequantizeLinear -> Add or GlobalAveragePool -> QuantizeLinear. The QDQ form means the same
/// (ONNX Runtime fuses it back into the QLinear kernels); an engine that runs QDQ models then runs these too, the cuda
/// engine's int8 path taking the pairs as int8 layers where QLinearConv would otherwise have had its direct kernel and the
/// com.microsoft operators none. A QLinearConv whose int32 bias cannot become a float one (the bias or its scales not
/// constants), or a pooling over a channels-last input, is kept, and the summary names it.
/// </summary>
public sealed class QOperatorToQdq : IModelTransform
{
    /// <summary>The operators rewritten, by domain-qualified name.</summary>
    public static bool Rewrites(OnnxProto.NodeProto node) => (OperatorRegistry.NormalizeDomain(node.Domain), node.OpType) switch
    {
        ("", "QLinearConv") => true,
        ("com.microsoft", "QLinearAdd" or "QLinearGlobalAveragePool") => true,
        _ => false,
    };

    /// <inheritdoc/>
    public string Name => "qoperator-to-qdq";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var inits = GraphSurgery.Initializers(graph);
        var names = GraphSurgery.Names(graph);
        var (rewritten, kept) = GraphSurgery.ReplaceNodes(graph, Rewrites, node => (Rewrite(node, inits, names, graph, out var why), why), GraphSurgery.Label);
        return $"rewrote {rewritten} QOperator node(s) as DequantizeLinear -> operator -> QuantizeLinear" + (kept.Count > 0 ? $"; kept {kept.Count}: {string.Join("; ", kept)}" : string.Empty);
    }

    /// <summary>The QDQ nodes that replace <paramref name="node"/>, or null and why it is kept.</summary>
    private static List<OnnxProto.NodeProto>? Rewrite(OnnxProto.NodeProto node, Dictionary<string, OnnxProto.TensorProto> inits, HashSet<string> names, OnnxProto.GraphProto graph, out string? why)
    {
        why = null;
        switch (node.OpType)
        {
            case "QLinearConv":
                return Conv(node, inits, names, graph, out why);
            case "QLinearAdd":
                return Pointwise(node, names, "Add", [(0, 1, 2), (3, 4, 5)], (6, 7));
            default:
                if (GraphSurgery.Int(node, "channels_last", 0) != 0)
                {
                    why = "its input is channels-last (channels_last = 1)";
                    return null;
                }

                return Pointwise(node, names, "GlobalAveragePool", [(0, 1, 2)], (3, 4));
        }
    }

    /// <summary>
    /// An operator over dequantized inputs, quantized: <paramref name="inputs"/> are (value, scale, zero point) input
    /// positions (a zero point past the node's inputs, or empty, is absent), <paramref name="output"/> the output's scale and
    /// zero point positions.
    /// </summary>
    private static List<OnnxProto.NodeProto> Pointwise(OnnxProto.NodeProto node, HashSet<string> names, string op, (int Value, int Scale, int Zero)[] inputs, (int Scale, int Zero) output)
    {
        string In(int k) => k < node.Input.Count ? node.Input[k] : string.Empty;
        var stem = string.IsNullOrEmpty(node.Name) ? node.Output[0] : node.Name;
        var nodes = new List<OnnxProto.NodeProto>();
        var operands = new List<string>();
        foreach (var (value, scale, zero) in inputs)
        {
            var d = GraphSurgery.Unique(names, $"{stem}/dequantized_{value}");
            nodes.Add(GraphSurgery.Node("DequantizeLinear", GraphSurgery.Unique(names, $"{stem}/DequantizeLinear_{value}"), In(zero).Length > 0 ? [In(value), In(scale), In(zero)] : [In(value), In(scale)], [d]));
            operands.Add(d);
        }

        var result = GraphSurgery.Unique(names, $"{stem}/{op}");
        nodes.Add(GraphSurgery.Node(op, GraphSurgery.Unique(names, $"{stem}/{op}"), [.. operands], [result]));
        nodes.Add(GraphSurgery.Node("QuantizeLinear", GraphSurgery.Unique(names, $"{stem}/QuantizeLinear"), In(output.Zero).Length > 0 ? [result, In(output.Scale), In(output.Zero)] : [result, In(output.Scale)], [node.Output[0]]));
        return nodes;
    }

    /// <summary>QLinearConv (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point[, B]) in QDQ form, or null and why.</summary>
    private static List<OnnxProto.NodeProto>? Conv(OnnxProto.NodeProto node, Dictionary<string, OnnxProto.TensorProto> inits, HashSet<string> names, OnnxProto.GraphProto graph, out string? why)
    {
        why = null;
        var stem = string.IsNullOrEmpty(node.Name) ? node.Output[0] : node.Name;
        var nodes = new List<OnnxProto.NodeProto>();
        var xd = GraphSurgery.Unique(names, $"{stem}/x_dequantized");
        var wd = GraphSurgery.Unique(names, $"{stem}/w_dequantized");
        nodes.Add(GraphSurgery.Node("DequantizeLinear", GraphSurgery.Unique(names, $"{stem}/DequantizeLinear_x"), [node.Input[0], node.Input[1], node.Input[2]], [xd]));
        var ws = inits.TryGetValue(node.Input[4], out var wScale) ? HostTensor.FromProto(wScale) : null;
        var hasBias = node.Input.Count > 8 && node.Input[8].Length > 0;
        OnnxProto.TensorProto? bias = null, xScale = null;
        if (hasBias && (!inits.TryGetValue(node.Input[8], out bias) || !inits.TryGetValue(node.Input[1], out xScale) || ws is null))
        {
            // Checked before anything is added to the graph: a kept node leaves it as it was.
            why = "its bias or scales are not constants";
            return null;
        }

        var wZero = node.Input[5];
        var perChannel = ws is { Count: > 1 };
        if (perChannel && inits.TryGetValue(wZero, out var zeroTensor) && HostTensor.FromProto(zeroTensor) is { Count: 1 } one)
        {
            // QLinearConv takes one weight zero point beside per-channel scales; DequantizeLinear wants one per scale.
            var count = ws!.Count;
            wZero = GraphSurgery.Unique(names, $"{stem}/w_zero_points");
            graph.Initializer.Add(one.Type == ElementType.UInt8
                ? GraphSurgery.RawTensor<byte>(wZero, ElementType.UInt8, [count], [.. Enumerable.Repeat((byte)one[0], (int)count)])
                : GraphSurgery.RawTensor<sbyte>(wZero, ElementType.Int8, [count], [.. Enumerable.Repeat((sbyte)one[0], (int)count)]));
        }

        var wDequantize = GraphSurgery.Node("DequantizeLinear", GraphSurgery.Unique(names, $"{stem}/DequantizeLinear_w"), [node.Input[3], node.Input[4], wZero], [wd]);
        if (perChannel)
        {
            wDequantize.Attribute.Add(GraphSurgery.IntAttr("axis", 0)); // per output channel
        }

        nodes.Add(wDequantize);
        var convInputs = new List<string> { xd, wd };
        if (hasBias)
        {
            // The int32 bias is in units of x_scale * w_scale[c]: as a float bias, B[c] * x_scale * w_scale[c].
            var (b, xs) = (HostTensor.FromProto(bias!), HostTensor.FromProto(xScale!));
            var values = new float[b.Count];
            for (var c = 0; c < values.Length; c++)
            {
                values[c] = (float)(b[c] * (float)xs[0] * (float)ws![ws.Count == 1 ? 0 : c]);
            }

            var name = GraphSurgery.Unique(names, $"{stem}/bias_float");
            graph.Initializer.Add(GraphSurgery.FloatTensor(name, [values.Length], values));
            convInputs.Add(name);
        }

        var y = GraphSurgery.Unique(names, $"{stem}/conv");
        var conv = GraphSurgery.Node("Conv", GraphSurgery.Unique(names, $"{stem}/Conv"), [.. convInputs], [y]);
        conv.Attribute.Add(node.Attribute); // auto_pad, dilations, group, kernel_shape, pads, strides: Conv's own
        nodes.Add(conv);
        nodes.Add(GraphSurgery.Node("QuantizeLinear", GraphSurgery.Unique(names, $"{stem}/QuantizeLinear"), [y, node.Input[6], node.Input[7]], [node.Output[0]]));
        return nodes;
    }
}
