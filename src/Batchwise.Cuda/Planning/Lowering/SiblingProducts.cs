using Batchwise.Cuda.Kernels;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Sibling products (a transformer's separate Q, K and V projections: MatMuls of one activation by constant weights of
/// the same K, each with or without a constant bias Add) run as one GEMM over the weights concatenated along N, the
/// biases in its epilogue, where every result feeds a fused attention block: each projection is then a strided view of
/// the one result (row stride the summed N), which the view chain (Reshape, Transpose) and the attention kernel read as
/// they are. One [M, 3N] product runs nearer the GEMM's peak than three [M, N] ones (at DistilBERT's b=64 x seq 128,
/// N=768: three products of 8192x768x768 took 20.5 us each on an H200, about 470 TFLOP/s).
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// Plans <paramref name="node"/> (a MatMul of <paramref name="a"/> by the constant [K, N] <paramref name="b"/>) together
    /// with its not yet planned siblings, or returns false (nothing emitted, nothing folded) where fewer than two qualify.
    /// </summary>
    private bool TryLowerSiblingProducts(OnnxProto.NodeProto node, PlanValue a, PlanValue b, long[] batchShape, long m)
    {
        if (!Half || _target.ComputeCapability < 80 || b.Constant is null || b.Shape.Length != 2 || a.Shape.Length < 2
            || a.ViewStrides is not null || a.Nhwc || !_consumers.TryGetValue(node.Input[0], out var users))
        {
            return false;
        }

        var k = b.Shape[0];
        var siblings = new List<(OnnxProto.NodeProto Node, HostTensor Weight, PlanValue? Bias, OnnxProto.NodeProto? Add, string Name)>();
        foreach (var u in users)
        {
            if (u.OpType != "MatMul" || u.Input.Count != 2 || u.Input[0] != node.Input[0] || u.Input[1] == node.Input[0] || _folded.Contains(u)
                || (u != node && !PlannedLater(u)) || u.Output.Any(_graphOutputs.Contains)
                || !_values.TryGetValue(u.Input[1], out var w) || w.Constant is not { IsFloat: true } weight || w.Shape.Length != 2 || w.Shape[0] != k
                || St(w) != St(b) || siblings.Any(s => s.Node == u))
            {
                continue;
            }

            var (name, added, add) = (u.Output[0], (PlanValue?)null, (OnnxProto.NodeProto?)null);
            if (BiasAdd(name, [.. batchShape, m, w.Shape[1]]) is var (next, c) && !_graphOutputs.Contains(next.Output[0]))
            {
                (name, added, add) = (next.Output[0], c, next);
            }

            if (FeedsAttention(name))
            {
                siblings.Add((u, weight, added, add, name));
            }
        }

        if (siblings.Count < 2 || !siblings.Any(s => s.Node == node) || siblings.Any(s => s.Bias is null) != siblings.All(s => s.Bias is null))
        {
            return false;
        }

        // The weights side by side as one [K, sum N] constant, the biases as one [sum N]: derived once per session.
        var widths = siblings.Select(s => s.Weight.Shape[1]).ToArray();
        var total = widths.Sum();
        var starts = ColumnStarts(widths);

        HostTensor[] weights = [.. siblings.Select(s => s.Weight)];
        var merged = _target.Derive($"concat-columns:{k}x{string.Join('+', widths)}", weights, () => HostTensor.Create(weights[0].Type, [k, total], i =>
        {
            var (row, col) = (i / total, i % total);
            var part = Array.FindLastIndex(starts, s => s <= col);
            return weights[part][(row * widths[part]) + col - starts[part]];
        }));
        PlanValue? bias = null;
        if (siblings[0].Bias is not null)
        {
            HostTensor[] biases = [.. siblings.Select(s => s.Bias!.Constant!)];
            bias = new PlanValue(biases[0].Type, [total], _target.Derive($"concat-bias:{string.Join('+', widths)}", biases, () => HostTensor.Create(biases[0].Type, [total], i =>
            {
                var part = Array.FindLastIndex(starts, s => s <= i);
                return biases[part][i - starts[part]];
            })));
        }

        var rows = checked(Shapes.Product(batchShape) * m);
        var product = Temp(a.Type, [rows, total]);
        var label = _node;
        _node = SiblingsLabel(node, siblings.Select(s => s.Node));
        try
        {
            EmitMatmul(a, new PlanValue(merged.Type, [k, total], merged), product, (int)rows, (int)total, (int)k, false, false, k, total, 1, 0, 0, 1, 0, bias);
        }
        finally
        {
            _node = label;
        }

        // Each result a view of its columns: shape batch x [M, N_i], rows `total` apart.
        for (var i = 0; i < siblings.Count; i++)
        {
            _values[siblings[i].Name] = ColumnView(product, [.. batchShape, m], widths[i], total, starts[i]);
            if (siblings[i].Node != node)
            {
                _folded.Add(siblings[i].Node);
            }

            if (siblings[i].Add is { } add)
            {
                _folded.Add(add);
            }
        }

        return true;
    }

    /// <summary>Where each sibling's columns start in the product over their weights side by side (widths <paramref name="widths"/>).</summary>
    private static long[] ColumnStarts(long[] widths)
    {
        var starts = new long[widths.Length];
        for (var i = 1; i < widths.Length; i++)
        {
            starts[i] = starts[i - 1] + widths[i - 1];
        }

        return starts;
    }

    /// <summary>
    /// One sibling's result as a view of the joint product: shape <paramref name="lead"/> x [<paramref name="width"/>],
    /// rows <paramref name="total"/> apart, from column <paramref name="start"/>.
    /// </summary>
    private PlanValue ColumnView(PlanValue product, long[] lead, long width, long total, long start)
    {
        long[] shape = [.. lead, width];
        var strides = KernelSource.Strides(shape);
        for (var d = 0; d < shape.Length - 1; d++)
        {
            strides[d] = strides[d] / width * total;
        }

        return StridedView(product, shape, strides, start);
    }

    /// <summary>The joint product's step name: the node planned, then its siblings (by name, or first output), "(one product)".</summary>
    private string SiblingsLabel(OnnxProto.NodeProto node, IEnumerable<OnnxProto.NodeProto> siblings) =>
        $"{_node} + {string.Join(" + ", siblings.Where(s => s != node).Select(s => string.IsNullOrEmpty(s.Name) ? s.Output[0] : s.Name))} (one product)";

    /// <summary>Whether <paramref name="node"/> comes after the node being planned (so it has not been planned yet).</summary>
    private bool PlannedLater(OnnxProto.NodeProto node)
    {
        for (var i = _nodeIndex + 1; i < _facts.Nodes.Count; i++)
        {
            if (_facts.Nodes[i] == node)
            {
                return true;
            }
        }

        return false;
    }
}
