using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Attention blocks recognised in the graph and run as one fused kernel (<see cref="KernelSource.Attention"/>) in half
/// precision: MatMul(Q, K^T) -> [Mul or Div by a scalar] -> [Add mask] -> Softmax over the last axis -> MatMul(., V),
/// as torch's exporters write scaled-dot-product attention; scalar scales on Q and K^T read by the product alone (the
/// SDPA export's sqrt(scale) on each) fold into the kernel's scale, and Identity, Dropout and float Casts in the chain
/// (softmax(dtype=float32).to(dtype)) are skipped. torch's SDPA export with a mask fuses too: a boolean mask made
/// additive by Where(mask, 0, -inf) is read by the kernel as bytes (that Where and its constants, written after the
/// product, are planned early), a constant mask that adds nothing is dropped, and the "safe softmax" tail
/// Where(IsNaN(p), 0, p) becomes the kernel's zeros for rows masked entirely (NaN without it, as ONNX's Softmax gives).
/// The scores and probabilities are never written to memory. Q, K^T and
/// V may be strided views (<see cref="TryLowerView"/>: the Transpose/Split/Gather/Slice chains from the projections
/// cost no copy), and O is written as [B, Sq, H, Dv] when a Transpose(0, 2, 1, 3) alone reads it. Anything else
/// (float32 plans, GPUs before sm_80, heads wider than 128, a chain whose middle values are used elsewhere, a value V
/// not computed yet) plans node by node.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// BATCHWISE_ATTENTION_ROWS: the fused attention kernel's query rows a block, 64 (four warps; the default) or 128
    /// (eight warps, a (batch, head)'s keys and values read once by one block where the sequence is at most 128; padded
    /// heads up to 80 only, others keep 64). Not the default: slower in DistilBERT and BERT at b=64 (session 44, H100).
    /// </summary>
    internal static int AttentionRowsFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_ATTENTION_ROWS")?.Trim() switch
    {
        null or "" or "64" => KernelSource.AttentionRows,
        "128" => KernelSource.AttentionWideRows,
        var other => throw new BatchwiseException($"BATCHWISE_ATTENTION_ROWS '{other}' is not 64 or 128", "Unset it (64 query rows a block), or set BATCHWISE_ATTENTION_ROWS=128 for the eight-warp block."),
    };

    /// <summary>Plans the attention block that starts at MatMul <paramref name="node"/>, or returns false for node-by-node planning.</summary>
    private bool TryLowerAttention(OnnxProto.NodeProto node, PlanValue q, PlanValue kt)
    {
        // A scalar Mul or Div on Q or K^T read by this product alone (torch's SDPA export scales both by sqrt(scale))
        // folds into the kernel's scale: its pending value is never computed.
        var scale = 1.0;
        (q, scale) = Unscaled(node, node.Input[0], q, scale);
        (kt, scale) = Unscaled(node, node.Input[1], kt, scale);
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
        var next = SoleConsumer(name);
        SkipIdentities(chain, ref name, ref next);
        if (next is { OpType: "Mul" or "Div" } && ScalarOperand(next, name) is { } factor && (next.OpType == "Mul" || next.Input[0] == name))
        {
            scale *= next.OpType == "Mul" ? factor : 1.0 / factor;
            chain.Add(next);
            name = next.Output[0];
            next = SoleConsumer(name);
            SkipIdentities(chain, ref name, ref next);
        }

        PlanValue? mask = null;
        (double WhenTrue, double WhenFalse)? select = null;
        if (next is { OpType: "Add" } && next.Input.Count == 2 && next.Input[0] != next.Input[1])
        {
            // A boolean mask made additive by Where(mask, a, b) of two scalars (SDPA's export: 0, -inf) is read as it is
            // by the kernel; any other mask as a half tensor. SDPA's export writes that Where (and its constants) after
            // the scores' product: planned now if it can be.
            var maskName = next.Input[0] == name ? next.Input[1] : next.Input[0];
            if (BooleanMask(maskName, next, rank) is var (condition, whenTrue, whenFalse, maskWhere))
            {
                (mask, select) = (condition, (whenTrue, whenFalse));
                chain.Add(maskWhere);
            }
            else if (!TryPlanEarly(maskName, 0) || !_values.TryGetValue(maskName, out mask) || St(mask) != ElementType.Float16)
            {
                return false;
            }

            chain.Add(next);
            name = next.Output[0];
            next = SoleConsumer(name);
            SkipIdentities(chain, ref name, ref next);
        }

        if (next is not { OpType: "Softmax" } || Shapes.Axis(new NodeAttributes(next).Int("axis", _model.Opset >= 13 ? -1 : 1), rank) != rank - 1)
        {
            return false;
        }

        chain.Add(next);
        name = next.Output[0];
        var product = SoleConsumer(name);
        SkipIdentities(chain, ref name, ref product);

        // SDPA's "safe softmax" tail, Where(IsNaN(p), 0, p): rows whose sum is not positive (every score -inf) give zeros.
        var zeroEmptyRows = false;
        if (product is null && SafeSoftmaxTail(name, rank) is var (isNaN, where))
        {
            chain.Add(isNaN);
            chain.Add(where);
            zeroEmptyRows = true;
            name = where.Output[0];
            product = SoleConsumer(name);
            SkipIdentities(chain, ref name, ref product);
        }

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

        // A mask that adds nothing (HF ViT's: Where(all true, 0, -inf) over a constant Expand) is dropped.
        if (mask?.Constant is { } known && AddsNothing(known, select))
        {
            mask = null;
        }

        // The kernel's offsets inside one (batch, head) slice are 32-bit: Q and V (row-major, at most 128 wide) fit by
        // the check above, so do K copied into [.., Sk, D]; K read as stored and the mask are checked here.
        // Q and V may be strided views (of a packed QKV projection, say): their spans are checked too. The output goes
        // straight into [B, Sq, H, Dv] where a Transpose(0, 2, 1, 3) alone reads it (then a free view).
        var (copyKeys, keyMemory) = KeyLayout(kt, sk, d);
        var rows = KernelSource.AttentionTakesRows(_target.AttentionRows, head) ? _target.AttentionRows : KernelSource.AttentionRows;
        static long Span(long rowStride, long rows, long colStride, long cols) => (Math.Abs(rowStride) * (rows - 1)) + (Math.Abs(colStride) * (cols - 1));
        var maskStrides = mask is null ? null : Shapes.BroadcastStrides(mask.Shape, scores);
        var (qMemory, vMemory) = (MemoryStrides(q), MemoryStrides(v));
        var heads = lead.Length == 1 ? lead[0] : lead[1];
        var outTranspose = lead.Length == 2 && SoleConsumer(product.Output[0]) is { OpType: "Transpose" } t
            && new NodeAttributes(t).Ints("perm") is [0, 2, 1, 3] && !_graphOutputs.Contains(t.Output[0]) ? t : null;
        if ((!copyKeys && Span(keyMemory[^2], sk, keyMemory[^1], d) >= int.MaxValue) || (maskStrides is not null && Span(maskStrides[^2], sq, maskStrides[^1], sk) >= int.MaxValue)
            || Span(qMemory[^2], sq, qMemory[^1], d) >= int.MaxValue || Span(vMemory[^2], sk, vMemory[^1], dv) >= int.MaxValue
            || (outTranspose is not null && heads * dv * (long)rows >= int.MaxValue))
        {
            return false;
        }

        // Everything checked: the chain is this kernel's.
        _folded.UnionWith(chain);
        _folded.Add(product);
        // Q, V and the mask row-major in their own shapes: computed if pending, NCHW if stored channels-last. K^T computed
        // if pending, and copied into [.., Sk, D] where KeyLayout says so.
        // Strided views are read where they lie (their buffer and offset).
        (PlanValue Value, long[] Memory, long Offset) Operand(PlanValue x) => x.ViewStrides is { } s ? (Backing(x), s, x.ViewOffset) : (x, MemoryStrides(x), 0);
        var qo = Operand(q.ViewStrides is null ? Nchw(q) : q);
        var ko = Operand(kt.ViewStrides is null ? Materialize(kt) : kt);
        var keys = ko.Value;
        var keyOffset = ko.Offset;
        if (copyKeys)
        {
            var shape = kt.Shape[..^2].Concat(new[] { sk, d }).ToArray();
            var copy = Temp(kt.Type, shape);
            ViewCopy(keys, shape, keyMemory, keyOffset, copy, KernelSource.Strides(shape), 0);
            (keys, keyMemory, keyOffset) = (copy, KernelSource.Strides(shape), 0);
        }

        var vo = Operand(v.ViewStrides is null ? Nchw(v) : v);
        // The mask row-major, or a broadcast view (an Expand's, see ExpandsAMaskOnly) read through its strides.
        var mo = mask is null ? default : Operand(mask.ViewStrides is null || mask.ViewOffset != 0 ? Nchw(mask) : mask);
        _node = $"{_node} + {string.Join(" + ", chain.Select(n => n.OpType))} + MatMul{(outTranspose is null ? string.Empty : " + Transpose")} (fused attention)";
        var batch = lead.Length == 1 ? 1L : lead[0];
        PlanValue y;
        long[]? outStrides = null;
        (double Scale, double Zero, ElementType Type)? quantize = null;
        if (outTranspose is not null && QuantizedAttentionOutput(outTranspose, [batch, sq, heads, dv]) is { } quantized)
        {
            // O -> Transpose -> Reshape -> QuantizeLinear: the kernel writes the QuantizeLinear's bytes (stored as int8) in
            // [B, Sq, H, Dv] order, which is the Reshape's output as it lies; the int8 products read them as they are.
            var q8 = quantized.Quantize;
            _folded.UnionWith([outTranspose, quantized.Reshape]);
            _node += " + Reshape + QuantizeLinear";
            y = NewValue(ElementType.Int8, quantized.Shape, false, "int8 " + q8.Node.Output[0]);
            outStrides = [sq * heads * dv, dv, heads * dv];
            quantize = (q8.Scale, q8.Zero, q8.Type);
            PublishQuantized(q8.Node, y, quantized.Shape, StoredShift(q8.Type));
        }
        else if (outTranspose is not null)
        {
            // O written as [B, Sq, H, Dv]: the Transpose's output is that buffer as it is; the product's output a view of it.
            _folded.Add(outTranspose);
            y = Output(outTranspose.Output[0], q.Type, [batch, sq, heads, dv]);
            outStrides = [sq * heads * dv, dv, heads * dv];
            _values[product.Output[0]] = new PlanValue(y.Type, lead.Concat(new[] { sq, dv }).ToArray(), null, y.Buffer) { ViewStrides = [.. outStrides, 1] };
        }
        else
        {
            y = Output(product.Output[0], q.Type, lead.Concat(new[] { sq, dv }).ToArray());
        }

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

        var keyShape = kt.Shape[..^2].Concat(new[] { sk, d }).ToArray();
        var flagged = -1;
        if (_target.Attention != AttentionChoice.Own && quantize is null && d == dv
            && TryEmitCudnnAttention(y, [(qo.Value, Strides(q.Shape, qo.Memory, sq, d), qo.Offset), (keys, Strides(keyShape, keyMemory, sk, d), keyOffset), (vo.Value, Strides(v.Shape, vo.Memory, sk, dv), vo.Offset)], outStrides is null ? Strides(y.Shape, KernelSource.Strides(y.Shape), sq, dv) : [.. outStrides, 1], batch, heads, sq, sk, d, scale, mask is null ? null : (mo.Value, Strides(mask.Shape, mo.Memory, sq, sk), mo.Offset, select), zeroEmptyRows, out flagged)
            && flagged < 0)
        {
            return true;
        }

        // The own kernel: the block's, or (after cuDNN took the mask as sequence lengths) the items it flagged.
        var onlyFlagged = flagged >= 0;
        var code = KernelSource.Attention(head, batch, heads, sq, sk, d, dv, scale, Strides(q.Shape, qo.Memory, sq, d), Strides(keyShape, keyMemory, sk, d), Strides(v.Shape, vo.Memory, sk, dv), mask is null ? null : Strides(mask.Shape, mo.Memory, sq, sk), [qo.Offset, keyOffset, vo.Offset], outStrides, zeroEmptyRows, mask is null ? null : select, quantize, rows, onlyFlagged);
        Emit(new KernelStep(onlyFlagged ? _node + " (items not a kept prefix)" : _node, code, onlyFlagged ? KernelSource.AttentionFlaggedThreads(batch, heads, sq, rows, _target.Multiprocessors) : KernelSource.AttentionThreads(batch, heads, sq, rows), KernelSource.AttentionThreadsPerBlock(rows), [Dev(y), Dev(qo.Value), Dev(keys), Dev(vo.Value), mask is null ? -1 : Dev(mo.Value), .. (onlyFlagged ? [flagged] : Array.Empty<int>())]));
        return true;
    }

    /// <summary>
    /// Where the attention's output Transpose (of <paramref name="transposed"/>, [B, Sq, H, Dv]) is read by a Reshape alone
    /// (a constant target, the same elements in the same order) and that by a QuantizeLinear alone (per tensor, to uint8
    /// or int8): the Reshape, its shape and the QuantizeLinear; null otherwise.
    /// </summary>
    private (OnnxProto.NodeProto Reshape, long[] Shape, (OnnxProto.NodeProto Node, double Scale, double Zero, ElementType Type) Quantize)? QuantizedAttentionOutput(OnnxProto.NodeProto transpose, long[] transposed)
    {
        if (SoleConsumer(transpose.Output[0]) is not { OpType: "Reshape" } reshape || ReshapedShape(reshape, transposed) is not { } shape
            || Engines.Tensor.ElementCountOf(shape) != Engines.Tensor.ElementCountOf(transposed) || QuantizedAlone(reshape.Output[0]) is not { } q)
        {
            return null;
        }

        return (reshape, shape, q);
    }

    /// <summary>
    /// How the attention kernel reads K^T: whether to copy it into [.., Sk, D] first, and its strides in memory with the
    /// last two axes as (key, d). As stored where that takes the kernel's cp.async path (contiguous along d, rows and
    /// slices 16-byte aligned) or where D is not a multiple of 8 (the kernel's element-by-element path); otherwise one
    /// strided copy from however it is stored (a row-major [.., D, Sk] K^T, as exporters write k.transpose(-2, -1); or
    /// channels-last, instead of an NCHW copy).
    /// </summary>
    private static (bool Copy, long[] Strides) KeyLayout(PlanValue kt, long sk, long d)
    {
        var memory = MemoryStrides(kt);
        long[] strides = [.. memory[..^2], memory[^1], memory[^2]];
        bool Aligned(long s, long extent) => extent == 1 || s % 8 == 0;
        var fast = Enumerable.Range(0, kt.Shape.Length - 2).All(i => Aligned(memory[i], kt.Shape[i])) && strides[^1] == 1 && Aligned(strides[^2], sk) && d % 8 == 0 && kt.ViewOffset % 8 == 0;
        return (!fast && d % 8 == 0, strides);
    }

    /// <summary>
    /// The value a scalar Mul or Div scales into <paramref name="name"/> (an operand of <paramref name="product"/>, its
    /// sole consumer), with <paramref name="scale"/> times the factor; the operand itself where it is no such scaling.
    /// </summary>
    private (PlanValue Value, double Scale) Unscaled(OnnxProto.NodeProto product, string name, PlanValue value, double scale)
    {
        for (var i = 0; i < 2; i++)
        {
            if (Producer(name) is not { OpType: "Mul" or "Div", Input.Count: 2 } p || SoleConsumer(name) != product || p.Input[0] == p.Input[1])
            {
                break;
            }

            var data = ScalarOperand(p, p.Input[0]) is not null ? p.Input[0] : p.OpType == "Mul" && ScalarOperand(p, p.Input[1]) is not null ? p.Input[1] : null;
            if (data is null || !_values.TryGetValue(data, out var x) || x.Constant is not null || !x.Shape.SequenceEqual(value.Shape) || x.Type != value.Type)
            {
                break;
            }

            var factor = ScalarOperand(p, data)!.Value;
            factor = p.OpType == "Mul" ? factor : 1.0 / factor;
            if (!double.IsFinite(factor) || factor == 0)
            {
                break;
            }

            (name, value, scale) = (data, x, scale * factor);
        }

        return (value, scale);
    }

    /// <summary>
    /// The IsNaN and Where of torch's SDPA export after its Softmax (Where(IsNaN(p), 0, p): a row masked entirely gives
    /// zeros instead of NaN) when <paramref name="probs"/> has exactly those two readers; null otherwise.
    /// </summary>
    private (OnnxProto.NodeProto IsNaN, OnnxProto.NodeProto Where)? SafeSoftmaxTail(string probs, int rank)
    {
        if (_graphOutputs.Contains(probs) || !_consumers.TryGetValue(probs, out var users) || users.Count != 2
            || users.FirstOrDefault(u => u.OpType == "IsNaN") is not { } isNaN || users.FirstOrDefault(u => u.OpType == "Where") is not { Input.Count: 3 } where
            || where.Input[0] != isNaN.Output[0] || where.Input[1] == probs || where.Input[2] != probs || SoleConsumer(isNaN.Output[0]) != where)
        {
            return null;
        }

        return TryPlanEarly(where.Input[1], 0) && _values.TryGetValue(where.Input[1], out var zero) && zero.Constant is { Count: 1, IsFloat: true } z && z[0] == 0
            && zero.Shape.Length <= rank ? (isNaN, where) : null;
    }

    /// <summary>
    /// The boolean mask and the two scalars of a Where(mask, a, b) that <paramref name="add"/> alone reads as its
    /// operand <paramref name="name"/>, its inputs known (or planned early); null otherwise.
    /// </summary>
    private (PlanValue Condition, double WhenTrue, double WhenFalse, OnnxProto.NodeProto Where)? BooleanMask(string name, OnnxProto.NodeProto add, int rank)
    {
        if (Producer(name) is not { OpType: "Where", Input.Count: 3 } where || SoleConsumer(name) != add || _folded.Contains(where)
            || !where.Input.All(i => TryPlanEarly(i, 1)) || _values[where.Input[0]] is not { Type: ElementType.Bool } condition)
        {
            return null;
        }

        double? Scalar(string operand) => _values[operand] is { Constant: { Count: 1, IsFloat: true } c } v && v.Shape.Length <= rank ? c[0] : null;
        return Scalar(where.Input[1]) is { } whenTrue && Scalar(where.Input[2]) is { } whenFalse ? (condition, whenTrue, whenFalse, where) : null;
    }

    /// <summary>Whether a constant mask (additive, or boolean read through <paramref name="select"/>) adds zero to every score.</summary>
    private static bool AddsNothing(HostTensor mask, (double WhenTrue, double WhenFalse)? select)
    {
        for (long i = 0; i < mask.Count; i++)
        {
            if ((select is var (whenTrue, whenFalse) ? (mask[i] != 0 ? whenTrue : whenFalse) : mask[i]) != 0)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Operators a mask or a constant of the attention chain is computed by that may be planned ahead of their turn.</summary>
    private static readonly HashSet<string> EarlyOperators = new(StringComparer.Ordinal)
    {
        "Constant", "ConstantOfShape", "Where", "Cast", "Expand", "Unsqueeze", "Squeeze", "Reshape", "Not", "Neg", "Equal", "And", "Or",
        "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Add", "Sub", "Mul", "Slice", "Range", "Shape", "Gather", "Concat",
    };

    /// <summary>
    /// Makes <paramref name="name"/> known ahead of its producer's turn (torch's SDPA export writes the mask's Where and
    /// its constants after the scores' product): its producer and theirs, up to six deep, planned now where they are
    /// cheap operators whose inputs are known. The graph is in topological order, so any order that keeps each node
    /// after its inputs plans the same values. False when it cannot be.
    /// </summary>
    private bool TryPlanEarly(string name, int depth)
    {
        if (_values.ContainsKey(name))
        {
            return true;
        }

        if (depth >= 6 || Producer(name) is not { } p || _folded.Contains(p) || p.Domain.Length != 0 || !EarlyOperators.Contains(p.OpType)
            || !p.Input.All(i => i.Length == 0 || TryPlanEarly(i, depth + 1)))
        {
            return false;
        }

        var current = _node;
        PlanNode(p);
        _folded.Add(p);
        _node = current;
        return p.Output.All(o => o.Length == 0 || _values.ContainsKey(o));
    }

    /// <summary>Moves past Identity, single-output Dropout and float Casts (no-ops for the fused kernel, which computes in float) consumed alone.</summary>
    private void SkipIdentities(List<OnnxProto.NodeProto> chain, ref string name, ref OnnxProto.NodeProto? next)
    {
        while (next is { OpType: "Identity" } or { OpType: "Dropout", Output.Count: 1 }
            || (next is { OpType: "Cast" } && new NodeAttributes(next).Int("to", 0) is (long)ElementType.Float or (long)ElementType.Float16 && Half))
        {
            chain.Add(next);
            name = next.Output[0];
            next = SoleConsumer(name);
        }
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
