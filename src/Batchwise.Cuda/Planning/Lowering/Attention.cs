using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Attention blocks recognised in the graph and run as one fused kernel (<see cref="KernelSource.Attention"/>) in half
/// precision: MatMul(Q, K^T) -> [Mul or Div by a scalar] -> [Add mask] -> Softmax over the last axis -> MatMul(., V),
/// as torch's exporters write scaled-dot-product attention (a scale on Q and K before the product stays where it is).
/// The scores and probabilities are never written to memory. Anything else (float32 plans, GPUs before sm_80, heads
/// wider than 128, a chain whose middle values are used elsewhere, a value V not computed yet) plans node by node.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Plans the attention block that starts at MatMul <paramref name="node"/>, or returns false for node-by-node planning.</summary>
    private bool TryLowerAttention(OnnxProto.NodeProto node, PlanValue q, PlanValue kt)
    {
        var rank = q.Shape.Length;
        if (!Half || _target.ComputeCapability < 80 || rank is < 3 or > 4 || kt.Shape.Length != rank
            || q.Constant is not null || kt.Constant is not null || St(q) != ElementType.Float16 || St(kt) != ElementType.Float16)
        {
            return false;
        }

        long sq = q.Shape[^2], d = q.Shape[^1], sk = kt.Shape[^1];
        if (kt.Shape[^2] != d || sq == 0 || sk == 0 || d == 0)
        {
            return false;
        }

        var chain = new List<OnnxProto.NodeProto>();
        var name = node.Output[0];
        var scale = 1.0;
        var next = SoleConsumer(name);
        if (next is { OpType: "Mul" or "Div" } && ScalarOperand(next, name) is { } factor && (next.OpType == "Mul" || next.Input[0] == name))
        {
            scale = next.OpType == "Mul" ? factor : 1.0 / factor;
            chain.Add(next);
            name = next.Output[0];
            next = SoleConsumer(name);
        }

        PlanValue? mask = null;
        if (next is { OpType: "Add" } && next.Input.Count == 2 && next.Input[0] != next.Input[1])
        {
            if (!_values.TryGetValue(next.Input[0] == name ? next.Input[1] : next.Input[0], out mask) || St(mask) != ElementType.Float16)
            {
                return false;
            }

            chain.Add(next);
            name = next.Output[0];
            next = SoleConsumer(name);
        }

        if (next is not { OpType: "Softmax" } || Shapes.Axis(new NodeAttributes(next).Int("axis", _model.Opset >= 13 ? -1 : 1), rank) != rank - 1)
        {
            return false;
        }

        chain.Add(next);
        name = next.Output[0];
        var product = SoleConsumer(name);
        if (product is not { OpType: "MatMul" } || product.Input[0] != name || !_values.TryGetValue(product.Input[1], out var v)
            || v.Shape.Length != rank || v.Shape[^2] != sk || St(v) != ElementType.Float16)
        {
            return false;
        }

        var dv = v.Shape[^1];
        var head = (int)((Math.Max(d, dv) + 15) / 16 * 16);
        if (dv == 0 || head > KernelSource.AttentionMaxHead || Math.Max(sq, sk) * (long)KernelSource.AttentionMaxHead >= int.MaxValue)
        {
            return false;
        }

        long[] lead;
        try
        {
            lead = Shapes.Broadcast(q.Shape[..^2], kt.Shape[..^2], v.Shape[..^2]);
        }
        catch (BatchwiseException)
        {
            return false;
        }

        var scores = lead.Concat(new[] { sq, sk }).ToArray();
        if (mask is not null && !BroadcastsTo(mask.Shape, scores))
        {
            return false;
        }

        // Everything checked: the chain is this kernel's.
        _folded.UnionWith(chain);
        _folded.Add(product);
        // Q, V and the mask row-major in their own shapes: computed if pending, NCHW if stored channels-last. K^T as the
        // kernel reads it fastest (see KeysForKernel).
        q = Nchw(q);
        var (keys, keyStrides) = KeysForKernel(kt, sk, d);
        v = Nchw(v);
        mask = mask is null ? null : Nchw(mask);
        _node = $"{_node} + {string.Join(" + ", chain.Select(n => n.OpType))} + MatMul (fused attention)";
        var (batch, heads) = lead.Length == 1 ? (1L, lead[0]) : (lead[0], lead[1]);
        var y = Output(product.Output[0], q.Type, lead.Concat(new[] { sq, dv }).ToArray());

        // (batch, head, row, column) strides of each operand over the block's shape, from its strides in memory.
        long[] Strides(long[] shape, long[] memory, long rows, long cols)
        {
            var target = lead.Concat(new[] { rows, cols }).ToArray();
            var s = Shapes.BroadcastStrides(shape, target);
            for (var i = 0; i < shape.Length; i++)
            {
                var at = target.Length - shape.Length + i;
                s[at] = s[at] == 0 || target[at] == 1 ? 0 : memory[i];
            }

            return s.Length == 4 ? s : [0, .. s];
        }

        long[] RowMajor(PlanValue x, long rows, long cols) => Strides(x.Shape, KernelSource.Strides(x.Shape), rows, cols);
        var ks = Strides(keys.Shape, keyStrides, sk, d);
        long[][] all = [RowMajor(q, sq, d), ks, RowMajor(v, sk, dv)];
        if (all.Zip(new[] { (sq, d), (sk, d), (sk, dv) }).Any(p => (Math.Abs(p.First[2]) * (p.Second.Item1 - 1)) + (Math.Abs(p.First[3]) * (p.Second.Item2 - 1)) >= int.MaxValue))
        {
            throw new BatchwiseException($"{_node}: one (batch, head) slice of an attention operand spans 2^31 elements or more", "Split the sequence, or run the model in float32.");
        }

        var code = KernelSource.Attention(head, batch, heads, sq, sk, d, dv, scale, all[0], ks, all[2], mask is null ? null : RowMajor(mask, sq, sk));
        Emit(new KernelStep(_node, code, KernelSource.AttentionThreads(batch, heads, sq), KernelSource.AttentionBlock, [Dev(y), Dev(q), Dev(keys), Dev(v), mask is null ? -1 : Dev(mask)]));
        return true;
    }

    /// <summary>
    /// The keys as the attention kernel reads them, with their strides in memory over the returned value's shape (the
    /// last two axes (key, d)): K^T's own buffer where its layout takes the kernel's cp.async path (contiguous along d,
    /// rows and slices 16-byte aligned), else one strided copy into [.., Sk, D] from however it is stored (a row-major
    /// [.., D, Sk] K^T, as exporters write k.transpose(-2, -1); channels-last, instead of an NCHW copy) when D is a
    /// multiple of 8, else K^T as stored (the kernel's element-by-element path).
    /// </summary>
    private (PlanValue Keys, long[] Strides) KeysForKernel(PlanValue kt, long sk, long d)
    {
        kt = Materialize(kt);
        var memory = MemoryStrides(kt);
        long dStride = memory[^2], keyStride = memory[^1];
        var rank = kt.Shape.Length;
        bool Aligned(long s, long extent) => extent == 1 || s % 8 == 0;
        var outer = Enumerable.Range(0, rank - 2).All(i => Aligned(memory[i], kt.Shape[i]));
        var fast = outer && dStride == 1 && Aligned(keyStride, sk) && d % 8 == 0;
        if (fast || d % 8 != 0)
        {
            return (kt, [.. memory[..^2], keyStride, dStride]);
        }

        var shape = kt.Shape[..^2].Concat(new[] { sk, d }).ToArray();
        var keys = Temp(kt.Type, shape);
        ViewCopy(kt, shape, [.. memory[..^2], keyStride, dStride], 0, keys, KernelSource.Strides(shape), 0);
        return (keys, KernelSource.Strides(shape));
    }

    /// <summary>The node that alone consumes <paramref name="name"/> (null when it is a graph output or has another consumer).</summary>
    private OnnxProto.NodeProto? SoleConsumer(string name) =>
        !_graphOutputs.Contains(name) && _consumers.TryGetValue(name, out var users) && users.Count == 1 ? users[0] : null;

    /// <summary>The value of <paramref name="node"/>'s other operand when it is a one-element constant.</summary>
    private double? ScalarOperand(OnnxProto.NodeProto node, string name)
    {
        if (node.Input.Count != 2 || node.Input[0] == node.Input[1])
        {
            return null;
        }

        var other = node.Input[0] == name ? node.Input[1] : node.Input[0];
        return _values.TryGetValue(other, out var value) && value.Constant is { Count: 1 } c && c.IsFloat ? c[0] : null;
    }

    private static bool BroadcastsTo(long[] shape, long[] target) =>
        shape.Length <= target.Length && shape.Select((s, i) => s == 1 || s == target[target.Length - shape.Length + i]).All(ok => ok);
}
