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

        // The kernel's offsets inside one (batch, head) slice are 32-bit: Q and V (row-major, at most 128 wide) fit by
        // the check above, so do K copied into [.., Sk, D]; K read as stored and the mask are checked here.
        var before = KeysBeforeTranspose(node.Input[1]);
        var keySource = before ?? kt;
        var (copyKeys, keyMemory) = KeyLayout(keySource, before is null, sk, d);
        static long Span(long rowStride, long rows, long colStride, long cols) => (Math.Abs(rowStride) * (rows - 1)) + (Math.Abs(colStride) * (cols - 1));
        var maskStrides = mask is null ? null : Shapes.BroadcastStrides(mask.Shape, scores);
        if ((!copyKeys && Span(keyMemory[^2], sk, keyMemory[^1], d) >= int.MaxValue) || (maskStrides is not null && Span(maskStrides[^2], sq, maskStrides[^1], sk) >= int.MaxValue))
        {
            return false;
        }

        // Everything checked: the chain is this kernel's.
        _folded.UnionWith(chain);
        _folded.Add(product);
        // Q, V and the mask row-major in their own shapes: computed if pending, NCHW if stored channels-last. K^T computed
        // if pending, and copied into [.., Sk, D] where KeyLayout says so.
        q = Nchw(q);
        var keys = Materialize(keySource);
        if (copyKeys)
        {
            var shape = keys.Shape[..^2].Concat(new[] { sk, d }).ToArray();
            var copy = Temp(keys.Type, shape);
            ViewCopy(keys, shape, keyMemory, 0, copy, KernelSource.Strides(shape), 0);
            (keys, keyMemory) = (copy, KernelSource.Strides(shape));
        }

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
        var code = KernelSource.Attention(head, batch, heads, sq, sk, d, dv, scale, RowMajor(q, sq, d), Strides(keys.Shape, keyMemory, sk, d), RowMajor(v, sk, dv), mask is null ? null : RowMajor(mask, sq, sk));
        Emit(new KernelStep(_node, code, KernelSource.AttentionThreads(batch, heads, sq), KernelSource.AttentionBlock, [Dev(y), Dev(q), Dev(keys), Dev(v), mask is null ? -1 : Dev(mask)]));
        return true;
    }

    /// <summary>
    /// How the attention kernel reads the keys, given as K^T [.., D, Sk] (<paramref name="transposed"/>) or as K
    /// [.., Sk, D]: whether to copy them into [.., Sk, D] first, and their strides in memory with the last two axes as
    /// (key, d). As stored where that takes the kernel's cp.async path (contiguous along d, rows and slices 16-byte
    /// aligned) or where D is not a multiple of 8 (the kernel's element-by-element path); otherwise one strided copy from
    /// however they are stored (a row-major K^T, channels-last instead of an NCHW copy).
    /// </summary>
    private static (bool Copy, long[] Strides) KeyLayout(PlanValue keys, bool transposed, long sk, long d)
    {
        var memory = MemoryStrides(keys);
        long[] strides = transposed ? [.. memory[..^2], memory[^1], memory[^2]] : memory;
        bool Aligned(long s, long extent) => extent == 1 || s % 8 == 0;
        var fast = Enumerable.Range(0, keys.Shape.Length - 2).All(i => Aligned(memory[i], keys.Shape[i])) && strides[^1] == 1 && Aligned(strides[^2], sk) && d % 8 == 0;
        return (!fast && d % 8 == 0, strides);
    }

    /// <summary>
    /// K itself where K^T (<paramref name="name"/>) is a Transpose of it that swaps the last two axes, as exporters write
    /// k.transpose(-2, -1): the kernel then reads K where it is, not K^T copied back into K's layout (the Transpose's own
    /// copy stays in the plan, unused by the kernel). Null otherwise.
    /// </summary>
    private PlanValue? KeysBeforeTranspose(string name)
    {
        var transpose = _model.Graph.Node.FirstOrDefault(n => n.OpType == "Transpose" && n.Output.Count == 1 && n.Output[0] == name);
        if (transpose is null || !_values.TryGetValue(transpose.Input[0], out var k) || k.Constant is not null || k.Shape.Length < 3)
        {
            return null;
        }

        var rank = k.Shape.Length;
        long[] swap = [.. Enumerable.Range(0, rank - 2).Select(i => (long)i), rank - 1, rank - 2];
        return new NodeAttributes(transpose).Ints("perm") is { } perm && perm.SequenceEqual(swap) && St(k) == ElementType.Float16 ? k : null;
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
