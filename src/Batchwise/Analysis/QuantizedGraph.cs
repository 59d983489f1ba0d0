using Batchwise.Onnx;

namespace Batchwise.Analysis;

/// <summary>How a node of a quantized graph runs, for the cost model.</summary>
public enum QuantizedRole
{
    /// <summary>In float, as stored (the whole graph of a float model).</summary>
    Float,

    /// <summary>An int8 product or int8 elementwise op: a QDQ-wrapped Conv, MatMul or Gemm (or residual Add), ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul.</summary>
    Int8,

    /// <summary>A QuantizeLinear, DequantizeLinear or DynamicQuantizeLinear that runs as a pass of its own over memory (float to int8 or back).</summary>
    QuantizePass,

    /// <summary>A QuantizeLinear or DequantizeLinear that engines fuse into an int8 op: a weight's, an int8 op's input, an int8 op's requantized output.</summary>
    Fused,
}

/// <summary>
/// Which nodes of a QDQ or dynamic-int8 graph run in int8, as ONNX Runtime's QDQ fusion (QLinearConv, QLinearMatMul,
/// QLinearAdd, MatMulIntegerToFloat) and the cuda engine's int8 route run them: a Conv, MatMul or Gemm whose data input
/// and weight both come from DequantizeLinear runs int8 (int8 in, int8 weights, int8 out when a QuantizeLinear alone
/// reads its output, else float out); what reads or writes float between int8 layers pays a quantize or dequantize pass,
/// except a ReLU6 between an int8 op's QuantizeLinear and the next (DequantizeLinear, Clip, QuantizeLinear), which its
/// epilogue takes.
/// </summary>
public static class QuantizedGraph
{
    private static readonly HashSet<string> Products = new(StringComparer.Ordinal) { "Conv", "MatMul", "Gemm" };

    private static readonly HashSet<string> IntegerOps = new(StringComparer.Ordinal) { "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul" };

    private static readonly HashSet<string> QuantizeOps = new(StringComparer.Ordinal) { "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear" };

    /// <summary>True for a model with any quantize, dequantize or integer operator (a QDQ or dynamic-int8 model).</summary>
    public static bool IsQuantized(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Graph.Node.Any(n => n.Domain.Length == 0 && (QuantizeOps.Contains(n.OpType) || IntegerOps.Contains(n.OpType)));
    }

    /// <summary>Each node's role, in graph order (all <see cref="QuantizedRole.Float"/> for a float model).</summary>
    public static QuantizedRole[] Roles(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var nodes = model.Graph.Node;
        var roles = new QuantizedRole[nodes.Count];
        var initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var (producer, consumers, outputs) = NodeLinks.Of(model);
        bool Is(int i, string op) => nodes[i].OpType == op && nodes[i].Domain.Length == 0;
        bool WeightDq(string value) => producer.TryGetValue(value, out var p) && Is(p, "DequantizeLinear") && initializers.Contains(nodes[p].Input[0]);
        bool ActivationDq(string value) => producer.TryGetValue(value, out var p) && Is(p, "DequantizeLinear") && !initializers.Contains(nodes[p].Input[0]);
        bool OnlyQuantized(string value) => !outputs.Contains(value) && consumers[value].Any() && consumers[value].All(c => Is(c, "QuantizeLinear"));

        for (var i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            if (n.Domain.Length != 0)
            {
                continue;
            }

            if (IntegerOps.Contains(n.OpType)
                || (Products.Contains(n.OpType) && n.Input.Count > 1 && ActivationDq(n.Input[0]) && WeightDq(n.Input[1]))
                || (n.OpType == "Add" && n.Input.Count == 2 && n.Input.All(ActivationDq) && OnlyQuantized(n.Output[0])))
            {
                roles[i] = QuantizedRole.Int8;
            }
            else if (QuantizeOps.Contains(n.OpType))
            {
                roles[i] = QuantizedRole.QuantizePass;
            }
        }

        // Fused: a weight's DequantizeLinear (the int8 op reads the int8 weight), an activation's when only int8 ops read
        // it, a QuantizeLinear of an int8 op's output (requantized in its epilogue).
        for (var i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            if (roles[i] != QuantizedRole.QuantizePass)
            {
                continue;
            }

            var readers = consumers[n.Output[0]].ToList();
            var fused = n.OpType switch
            {
                "DequantizeLinear" => initializers.Contains(n.Input[0]) || (readers.Count > 0 && !outputs.Contains(n.Output[0]) && readers.All(r => roles[r] == QuantizedRole.Int8)),
                "QuantizeLinear" => producer.TryGetValue(n.Input[0], out var p) && roles[p] == QuantizedRole.Int8,
                _ => false,
            };
            if (fused)
            {
                roles[i] = QuantizedRole.Fused;
            }
        }

        // A ReLU6 (or ReLU) as a QDQ model writes it after an int8 op: its requantized output -> DequantizeLinear -> Clip
        // or Relu -> QuantizeLinear, each read by the next alone, joins the op's epilogue (the cuda engine's int8 layers
        // write the last QuantizeLinear's bytes).
        int? Sole(string value) => !outputs.Contains(value) && consumers[value].Count() == 1 ? consumers[value].First() : null;
        for (var i = 0; i < nodes.Count; i++)
        {
            if (!(Is(i, "QuantizeLinear") && roles[i] == QuantizedRole.Fused && producer.TryGetValue(nodes[i].Input[0], out var op) && roles[op] == QuantizedRole.Int8))
            {
                continue;
            }

            if (Sole(nodes[i].Output[0]) is { } dq && Is(dq, "DequantizeLinear") && Sole(nodes[dq].Output[0]) is { } clip && (Is(clip, "Clip") || Is(clip, "Relu"))
                && Sole(nodes[clip].Output[0]) is { } q && Is(q, "QuantizeLinear"))
            {
                roles[dq] = roles[clip] = roles[q] = QuantizedRole.Fused;
            }
        }

        return roles;
    }

    /// <summary>
    /// The costs as an int8 engine moves them: an int8 product reads int8 activations and weights (a quarter of the
    /// float bytes the graph's DequantizeLinear outputs count; a float bias stays float) and writes int8 where its output is requantized; fused
    /// quantize and dequantize nodes move nothing and launch nothing. Integer operators keep their own (int8) bytes.
    /// </summary>
    public static ModelCost Lower(OnnxModel model, ModelCost cost, IReadOnlyList<QuantizedRole> roles)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cost);
        ArgumentNullException.ThrowIfNull(roles);
        var nodes = model.Graph.Node;
        var consumers = nodes.SelectMany((n, i) => n.Input.Select(x => (x, i))).ToLookup(p => p.x, p => p.i, StringComparer.Ordinal);
        var lowered = new List<NodeCost>(cost.Nodes.Count);
        for (var i = 0; i < cost.Nodes.Count; i++)
        {
            var c = cost.Nodes[i];
            lowered.Add(roles[i] switch
            {
                QuantizedRole.Fused => c with { Category = OpCategory.Metadata, Macs = 0, Flops = 0, WeightBytes = 0, ActivationBytesRead = 0, ActivationBytesWritten = 0 },
                QuantizedRole.Int8 when !IntegerOps.Contains(c.OpType) => c with
                {
                    ActivationBytesRead = c.ActivationBytesRead / 4,
                    ActivationBytesWritten = nodes[i].Output.All(o => consumers[o].Any() && consumers[o].All(r => roles[r] == QuantizedRole.Fused)) ? c.ActivationBytesWritten / 4 : c.ActivationBytesWritten,
                },
                _ => c,
            });
        }

        return cost with { Nodes = lowered };
    }
}
