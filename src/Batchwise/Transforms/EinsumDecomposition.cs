using Batchwise.Onnx;
using Batchwise.Operators;
using Batchwise.Zoo;
using OnnxProto = Onnx;

namespace Batchwise.Transforms;

/// <summary>
/// Rewrites the Einsum forms real exports use as Transpose and MatMul, so that engines without an Einsum kernel run
/// them: a permutation ("abc->cab") becomes one Transpose; a contraction of two operands over one label
/// ("bij,bjk->bik", attention's "bhqd,bhkd->bhqk" and "bhqk,bhkd->bhqd", a linear layer's "bnd,dh->bnh") becomes
/// Transposes around one MatMul, its shared labels as MatMul's batch dimensions and the labels only one operand has
/// leading on that side (MatMul broadcasts the other). Other forms (diagonals, sums over one operand, outer products,
/// several contracted labels) are kept, and the summary names each with the reason.
/// </summary>
public sealed class EinsumDecomposition : IModelTransform
{
    /// <inheritdoc/>
    public string Name => "einsum-decomposition";

    /// <inheritdoc/>
    public string Apply(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var shapes = ShapeInference.Run(model, null, tolerateUnresolved: true);
        var graph = model.Graph;
        static string Label(OnnxProto.NodeProto node) => string.IsNullOrEmpty(node.Name) ? $"Einsum node (output '{node.Output[0]}')" : $"Einsum node '{node.Name}'";
        var (rewritten, kept) = GraphSurgery.ReplaceNodes(
            graph,
            node => node.OpType == "Einsum" && OperatorRegistry.NormalizeDomain(node.Domain).Length == 0,
            node =>
            {
                try
                {
                    var ranks = node.Input.Select(input => shapes[input].Rank).ToArray();
                    var equation = new NodeAttributes(node).String("equation", string.Empty);
                    var parsed = EinsumEquation.Parse(equation, ranks, m => new BatchwiseException($"{Label(node)}: {m}", "Check the model."));
                    var reason = Decompose(node, parsed, out var replacement);
                    return (replacement, reason);
                }
                catch (BatchwiseException e)
                {
                    return (null, e.Message);
                }
            },
            Label);
        return $"rewrote {rewritten} Einsum node(s) as Transpose and MatMul" + (kept.Count > 0 ? $"; kept {kept.Count}: {string.Join("; ", kept)}" : string.Empty);
    }

    /// <summary>Builds the replacement of <paramref name="node"/>, or returns why its form is not rewritten.</summary>
    private static string? Decompose(OnnxProto.NodeProto node, EinsumEquation equation, out List<OnnxProto.NodeProto>? replacement)
    {
        replacement = null;
        var prefix = string.IsNullOrEmpty(node.Name) ? node.Output[0] : node.Name;
        var nodes = new List<OnnxProto.NodeProto>();
        if (equation.Inputs.Any(labels => labels.Distinct().Count() != labels.Length))
        {
            return "an operand repeats a label (a diagonal)";
        }

        string Permute(string input, int[] from, int[] to, string name, string? output = null)
        {
            var perm = to.Select(l => (long)Array.IndexOf(from, l)).ToArray();
            var result = output ?? $"{prefix}/{name}";
            if (perm.Select((p, k) => p == k).All(same => same))
            {
                if (output is null)
                {
                    return input;
                }

                nodes.Add(new OnnxProto.NodeProto { OpType = "Identity", Name = $"{prefix}/{name}", Input = { input }, Output = { result } });
                return result;
            }

            var transpose = new OnnxProto.NodeProto { OpType = "Transpose", Name = $"{prefix}/{name}", Input = { input }, Output = { result } };
            transpose.Attribute.Add(GraphBuilder.Attr("perm", perm));
            nodes.Add(transpose);
            return result;
        }

        if (equation.Inputs.Length == 1)
        {
            if (equation.Summed.Length > 0)
            {
                return "it sums over a label of its single operand";
            }

            Permute(node.Input[0], equation.Inputs[0], equation.Output, "transpose", node.Output[0]);
            replacement = nodes;
            return null;
        }

        if (equation.Inputs.Length != 2)
        {
            return $"it has {equation.Inputs.Length} operands (two are rewritten)";
        }

        var (a, b, output) = (equation.Inputs[0], equation.Inputs[1], equation.Output);
        if (equation.AllLabels.Any(l => !output.Contains(l) && a.Contains(l) != b.Contains(l)))
        {
            return "it sums over a label only one operand has";
        }

        var batch = output.Where(l => a.Contains(l) && b.Contains(l)).ToArray();
        var onlyA = output.Where(l => a.Contains(l) && !b.Contains(l)).ToArray();
        var onlyB = output.Where(l => b.Contains(l) && !a.Contains(l)).ToArray();
        var contracted = a.Where(l => b.Contains(l) && !output.Contains(l)).ToArray();
        if (contracted.Length != 1 || onlyA.Length == 0 || onlyB.Length == 0 || (onlyA.Length > 1 && onlyB.Length > 1))
        {
            return contracted.Length != 1 ? $"it contracts {contracted.Length} labels (one is rewritten)" : "it is not a matrix product (a side has no label of its own, or both have several)";
        }

        // MatMul: A [extraA..., batch..., m, k] x B [extraB..., batch..., k, n] -> [extra..., batch..., m, n].
        var (m, n, k) = (onlyA[^1], onlyB[^1], contracted[0]);
        int[] left = [.. onlyA[..^1], .. batch, m, k];
        int[] right = [.. onlyB[..^1], .. batch, k, n];
        int[] product = [.. onlyA[..^1], .. onlyB[..^1], .. batch, m, n];
        var matmul = new OnnxProto.NodeProto { OpType = "MatMul", Name = $"{prefix}/matmul", Input = { Permute(node.Input[0], a, left, "transpose_a"), Permute(node.Input[1], b, right, "transpose_b") }, Output = { $"{prefix}/matmul" } };
        nodes.Add(matmul);
        Permute(matmul.Output[0], product, output, "transpose_out", node.Output[0]);
        replacement = nodes;
        return null;
    }
}
