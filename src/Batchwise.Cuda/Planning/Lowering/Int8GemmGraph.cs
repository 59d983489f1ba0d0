using System.Globalization;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A QDQ model's int8 MatMul or Gemm on cuDNN's graph API (<see cref="Int8GemmChoice.Graph"/>): the product as a 1x1
/// int8 convolution over its rows (x [1, inner, rows, 1] channels-last is A row-major, w [columns, inner, 1, 1] the int8
/// weight table, y [1, columns, rows, 1] the row-major output) with what follows it in the graph's epilogue: the
/// dequantization (per-column scale and offset), a bias Add, then either a residual Add of an int8 activation already
/// stored (a transformer's LayerNorm output) or a GELU, and where a QuantizeLinear alone reads the GELU, that
/// QuantizeLinear (the graph then writes its bytes). What cuDNN refuses falls back a step at a time: without the residual
/// or the activation, then cuBLASLt.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>
    /// The graph chosen for an int8 product and what it takes in: the bias Add, the residual, the name the activation's
    /// result is stored under (its mode is the graph shape's), and the QuantizeLinear after it (the graph then writes int8).
    /// </summary>
    private sealed record Int8GemmGraph(Int8ConvGraph Graph, (OnnxProto.NodeProto Add, HostTensor Bias)? BiasAdd, Int8GemmResidual? Residual, string? ActivationOutput, (OnnxProto.NodeProto Node, double Scale, double Zero, ElementType Type)? Quantize);

    /// <summary>
    /// The graph for an int8 product of <paramref name="rows"/> x <paramref name="inner"/> by <paramref name="inner"/> x
    /// <paramref name="columns"/> with as much of what follows as cuDNN takes (a bias Add only where the node has no bias
    /// of its own, <paramref name="takeBias"/>); null and cuDNN's refusals where it takes not even the product.
    /// </summary>
    private Int8GemmGraph? PlanInt8GemmGraph(OnnxProto.NodeProto node, long rows, long inner, long columns, long[] outShape, bool takeBias, out string refusal)
    {
        var outType = St(ElementType.Float);
        var biasAdd = takeBias ? FollowingBiasAdd(node, outShape) : null;
        var afterBias = (biasAdd?.Add ?? node).Output[0];
        var residual = FollowingInt8Residual(afterBias, outShape);
        var gelu = residual is null ? TakeGelu(afterBias, commit: false) : (null, false);
        var quantize = gelu.Name is null ? null : QuantizedAlone(gelu.Name);
        var plain = new Int8ConvGraphShape([1, inner, rows, 1], [columns, inner, 1, 1], [1, columns, rows, 1], [0, 0], [1, 1], false, false, false, Out: outType);
        var notes = new List<string>();
        if (residual is not null)
        {
            if (ChooseInt8GemmGraph(plain with { Residual = true }, out var why) is { } g)
            {
                refusal = string.Empty;
                return new Int8GemmGraph(g, biasAdd, residual, null, null);
            }

            notes.Add($"residual Add not fused: {why}");
        }

        if (gelu.Name is not null)
        {
            var activation = gelu.Erf ? "gelu" : "gelu_tanh";
            var shape = quantize is { } q
                ? plain with { Activation = activation, Out = ElementType.Int8, ZeroAdd = q.Zero - StoredShift(q.Type) != 0 }
                : plain with { Activation = activation };
            if (ChooseInt8GemmGraph(shape, out var why) is { } g)
            {
                TakeGelu(afterBias); // now the chain is the graph's
                refusal = string.Join("; ", notes);
                return new Int8GemmGraph(g, biasAdd, null, gelu.Name, quantize);
            }

            notes.Add($"GELU not fused: {why}");
        }

        if (ChooseInt8GemmGraph(plain, out var plainWhy) is { } chosen)
        {
            refusal = string.Join("; ", notes);
            return new Int8GemmGraph(chosen, biasAdd, null, null, null);
        }

        notes.Add(plainWhy);
        refusal = string.Join("; ", notes);
        return null;
    }

    /// <summary>
    /// <see cref="ChooseInt8Graph"/> for a product laid out as a 1x1 convolution over one image of rows x 1 pixels, and
    /// where cuDNN refuses that, over rows images of one pixel (the same bytes: x, w and y are row-major either way).
    /// </summary>
    private Int8ConvGraph? ChooseInt8GemmGraph(Int8ConvGraphShape shape, out string refusal)
    {
        if (ChooseInt8Graph(shape, out refusal) is { } tall)
        {
            return tall;
        }

        var images = shape with { X = [shape.X[2], shape.X[1], 1, 1], Y = [shape.Y[2], shape.Y[1], 1, 1] };
        if (ChooseInt8Graph(images, out var imagesRefusal) is { } chosen)
        {
            return chosen;
        }

        refusal = $"{refusal}; as {shape.Y[2]} images: {imagesRefusal}";
        return null;
    }

    /// <summary>
    /// Emits the product on its graph: the int8 operand <paramref name="a"/>, the tables <paramref name="t"/>
    /// (<see cref="Int8GemmTables"/>), the vectors its epilogue reads; stores the output under the last node it takes
    /// and folds those nodes; returns how it runs.
    /// </summary>
    private string EmitInt8GemmGraph(OnnxProto.NodeProto node, Int8GemmGraph plan, PlanValue a, HostTensor[] t, string recipe, HostTensor?[] sources, long[] outShape, long rows, string notes)
    {
        var (graph, r, q) = (plan.Graph, plan.Residual, plan.Quantize);
        var shape = graph.Shape;
        var storedZero = q is { } z ? z.Zero - StoredShift(z.Type) : 0;
        var vectors = _target.Derive(string.Create(CultureInfo.InvariantCulture, $"{recipe}:graph:{r?.Scale:R}:{r?.Offset:R}:{q?.Scale:R}:{storedZero:R}"), sources, () => Int8GemmGraphVectors(t, r is null ? null : (r.Scale, r.Offset), q is null ? null : (q.Value.Scale, storedZero)));
        PlanValue V(HostTensor h) => new(h.Type, h.Shape, h);
        var y = NewValue(shape.Out, outShape, false, "int8 product " + _node);
        var buffers = new List<int> { Dev(a), Dev(V(t[0])), Dev(V(vectors[0])), Dev(V(vectors[1])), y.Buffer };
        if (shape.ZeroAdd)
        {
            buffers.Add(Dev(V(vectors[3])));
        }

        if (r is not null)
        {
            buffers.Add(Dev(r.Stored));
            buffers.Add(Dev(V(vectors[2])));
        }

        if (shape.HasOutScale)
        {
            buffers.Add(Dev(V(vectors[4])));
        }

        Emit(new Int8GraphConvStep(_node, [.. buffers], graph));
        ReserveWorkspace(graph.WorkspaceBytes);
        if (plan.BiasAdd is { } biasAdd)
        {
            _folded.Add(biasAdd.Add);
        }

        if (r is not null)
        {
            _folded.UnionWith(r.Folded);
        }

        if (q is { } quantize)
        {
            // The QuantizeLinear's bytes, stored as int8 (a uint8 value less 128), for the next product to read as they are.
            PublishQuantized(quantize.Node, y, outShape, StoredShift(quantize.Type));
        }
        else
        {
            _values[r?.Add.Output[0] ?? plan.ActivationOutput ?? (plan.BiasAdd?.Add ?? node).Output[0]] = y;
        }

        var took = string.Concat(plan.BiasAdd is null ? string.Empty : ", the bias Add in the offset", r is null ? string.Empty : ", the residual Add fused", shape.Activation is null ? string.Empty : $", {shape.Activation} fused", q is null ? string.Empty : " and its QuantizeLinear");
        return $"int8 (cuDNN graph, a 1x1 convolution over {rows} rows: {shape.Chain}{took}; {graph.Engine}){(notes.Length > 0 ? $" [{notes}]" : string.Empty)}";
    }

    /// <summary>
    /// <paramref name="aq"/> (a quantized first operand of int8 products) as the stored row-major int8 bytes the products
    /// read: made once for every product that reads it (a transformer's Q, K and V projections read one LayerNorm), or as
    /// a LayerNorm or an attention kernel already wrote them.
    /// </summary>
    private PlanValue Int8GemmOperand(PlanValue aq)
    {
        if (!_int8GemmOperands.TryGetValue(aq, out var a))
        {
            a = StoredInt8(aq.Nhwc ? Nchw(aq) : aq, StoredShift(aq.Type));
            _int8GemmOperands[aq] = a;
        }

        return a;
    }

    /// <summary>
    /// Plans <paramref name="layer"/>'s MatMul with its not yet planned siblings (a transformer's Q, K and V projections:
    /// int8 MatMuls of the same quantized activation, each with or without a bias Add, every result feeding a fused
    /// attention block) as one graph over the weights side by side, each result a strided view of its columns (as the
    /// float path's <see cref="TryLowerSiblingProducts"/>); returns how, or null (nothing emitted, nothing folded) where
    /// fewer than two qualify or cuDNN refuses the product.
    /// </summary>
    private string? TryLowerInt8SiblingGraph(Int8Layer layer, PlanValue aq, double aScale, double aZero, long rows, long inner)
    {
        var node = layer.Node;
        var operand = layer.InputDequantize!.Output[0];
        _int8Layers ??= FindInt8Layers();
        var batchShape = aq.Shape[..^1];
        var siblings = new List<(OnnxProto.NodeProto Node, HostTensor Weight, HostTensor Scale, (OnnxProto.NodeProto Add, HostTensor Bias)? BiasAdd, string Name)>();
        foreach (var u in _consumers.GetValueOrDefault(operand, []))
        {
            if (u.OpType != "MatMul" || u.Input[0] != operand || _folded.Contains(u) || (u != node && !PlannedLater(u)) || u.Output.Any(_graphOutputs.Contains)
                || !_int8Layers.TryGetValue(u, out var l) || !l.Int8 || l.InputDequantize != layer.InputDequantize || siblings.Any(x => x.Node == u))
            {
                continue;
            }

            var w = _values[l.WeightDequantize!.Input[0]].Constant!;
            var scale = _values[l.WeightDequantize.Input[1]].Constant!;
            if (w.Shape.Length != 2 || w.Shape[0] != inner)
            {
                continue;
            }

            long[] shape = [.. batchShape, w.Shape[1]];
            var biasAdd = FollowingBiasAdd(u, shape);
            var name = (biasAdd?.Add ?? u).Output[0];
            if (FeedsAttention(name))
            {
                siblings.Add((u, w, scale, biasAdd, name));
            }
        }

        if (siblings.Count < 2 || !siblings.Any(x => x.Node == node))
        {
            return null;
        }

        var widths = siblings.Select(x => x.Weight.Shape[1]).ToArray();
        var total = widths.Sum();
        var starts = ColumnStarts(widths);

        var plain = new Int8ConvGraphShape([1, inner, rows, 1], [total, inner, 1, 1], [1, total, rows, 1], [0, 0], [1, 1], false, false, false, Out: St(ElementType.Float));
        if (ChooseInt8GemmGraph(plain, out _) is not { } graph)
        {
            return null;
        }

        // Each sibling's tables, side by side: the weights [sum N, inner], the scales and offsets [sum N].
        var a = Int8GemmOperand(aq);
        var zero = aZero - StoredShift(aq.Type);
        var parts = siblings.Select(x => _target.Derive(string.Create(CultureInfo.InvariantCulture, $"int8gemm:n:{aScale:R}:{zero:R}"), [x.Weight, x.Scale, x.BiasAdd?.Bias], () => Int8GemmTables(x.Weight, false, x.Scale, x.BiasAdd?.Bias, aScale, zero))).ToList();
        var sources = siblings.SelectMany(x => new[] { x.Weight, x.Scale, x.BiasAdd?.Bias }).ToArray();
        var merged = _target.Derive(string.Create(CultureInfo.InvariantCulture, $"int8gemm-siblings:{inner}x{string.Join('+', widths)}:{aScale:R}:{zero:R}"), sources, () =>
        {
            var t = JoinedInt8GemmTables(parts);
            return Int8GemmGraphVectors(t, null).Take(2).Prepend(t[0]).ToArray();
        });
        PlanValue V(HostTensor h) => new(h.Type, h.Shape, h);
        var product = NewValue(St(ElementType.Float), [rows, total], false, "int8 products " + _node);
        Emit(new Int8GraphConvStep(SiblingsLabel(node, siblings.Select(x => x.Node)), [Dev(a), Dev(V(merged[0])), Dev(V(merged[1])), Dev(V(merged[2])), product.Buffer], graph));
        ReserveWorkspace(graph.WorkspaceBytes);

        // Each result a view of its columns: shape batch x [N_i], rows `total` apart.
        var how = $"int8 (cuDNN graph, {siblings.Count} products of one operand as one 1x1 convolution over {rows} rows: {graph.Shape.Chain}{(siblings.Any(x => x.BiasAdd is not null) ? ", the bias Adds in the offset" : string.Empty)}; {graph.Engine})";
        for (var i = 0; i < siblings.Count; i++)
        {
            _values[siblings[i].Name] = ColumnView(product, batchShape, widths[i], total, starts[i]);
            if (siblings[i].Node != node)
            {
                _folded.Add(siblings[i].Node);
                Int8Decisions[NodeLabel(siblings[i].Node)] = how;
            }

            if (siblings[i].BiasAdd is { } add)
            {
                _folded.Add(add.Add);
            }
        }

        return how;
    }

    /// <summary>
    /// Sibling products' tables (<see cref="Int8GemmTables"/>: weights [N_i, inner], scales and offsets [N_i]) as one
    /// product's: the weights' rows, the scales and the offsets one sibling after another.
    /// </summary>
    internal static HostTensor[] JoinedInt8GemmTables(IReadOnlyList<HostTensor[]> parts)
    {
        var widths = parts.Select(p => p[1].Count).ToArray();
        var (total, inner) = (widths.Sum(), parts[0][0].Shape[1]);
        var starts = ColumnStarts(widths);

        HostTensor Joined(int table, long[] shape, long width) => HostTensor.Create(parts[0][table].Type, shape, i =>
        {
            var (row, col) = (i / width, i % width);
            var part = Array.FindLastIndex(starts, s => s <= row);
            return parts[part][table][((row - starts[part]) * width) + col];
        });
        return [Joined(0, [total, inner], inner), Joined(1, [total], 1), Joined(2, [total], 1)];
    }

    /// <summary>
    /// The float32 vectors (as int32 bits) of an int8 product on cuDNN's graph from its tables (<see cref="Int8GemmTables"/>):
    /// the per-column scale, the offset (with a residual's zero point's share), the residual's scale per column (0
    /// without one), and for an int8 output (<paramref name="output"/>: the QuantizeLinear's scale and its stored zero
    /// point) the zero point and 1/scale per column (0 without one).
    /// </summary>
    internal static HostTensor[] Int8GemmGraphVectors(HostTensor[] tables, (double Scale, double Offset)? residual, (double Scale, double StoredZero)? output = null)
    {
        var columns = tables[1].Count;
        HostTensor Vector(Func<long, double> value) => HostTensor.CreateInts(ElementType.Int32, [columns], i => BitConverter.SingleToInt32Bits((float)value(i)));
        return
        [
            Vector(i => tables[1][i]),
            Vector(i => tables[2][i] + (residual?.Offset ?? 0)),
            Vector(_ => residual?.Scale ?? 0),
            Vector(_ => output?.StoredZero ?? 0),
            Vector(_ => output is { } o ? 1 / o.Scale : 0),
        ];
    }

    /// <summary>
    /// A residual Add after an int8 product on cuDNN's graph: the Add, the int8 bytes of its other operand as stored, that
    /// operand's scale and its zero point's share of the offset ((shift - z) · s), and the nodes folded with the Add.
    /// </summary>
    private sealed record Int8GemmResidual(OnnxProto.NodeProto Add, PlanValue Stored, double Scale, double Offset, OnnxProto.NodeProto[] Folded);

    /// <summary>
    /// The Add that alone reads <paramref name="name"/> (of <paramref name="shape"/>) where its other operand is
    /// DequantizeLinear(q) (per tensor) and q's int8 bytes are already stored row-major by an earlier step (a LayerNorm
    /// that wrote its QuantizeLinear, an int8 product's operand) in the same shape; null otherwise. The DequantizeLinear
    /// is folded only where the Add is its one reader.
    /// </summary>
    private Int8GemmResidual? FollowingInt8Residual(string name, long[] shape)
    {
        if (SoleConsumer(name) is not { OpType: "Add", Domain.Length: 0, Input.Count: 2 } add || add.Input[0] == add.Input[1])
        {
            return null;
        }

        var other = add.Input[0] == name ? add.Input[1] : add.Input[0];
        if (Producer(other) is not { OpType: "DequantizeLinear" } dq || QdqPerTensor(dq, _values.GetValueOrDefault) is not { } pair || pair.Scale <= 0
            || !_values.TryGetValue(dq.Input[0], out var q) || q.Type is not (ElementType.UInt8 or ElementType.Int8) || q.Nhwc
            || !_int8GemmOperands.TryGetValue(q, out var stored) || !stored.Shape.SequenceEqual(shape))
        {
            return null;
        }

        var shift = StoredShift(q.Type);
        OnnxProto.NodeProto[] folded = SoleConsumer(dq.Output[0]) == add ? [add, dq] : [add];
        return new Int8GemmResidual(add, stored, pair.Scale, (shift - pair.Zero) * pair.Scale, folded);
    }

    /// <summary>
    /// The Add that alone reads <paramref name="node"/>'s output (of <paramref name="shape"/>) and adds a constant of one
    /// value per column (shape [columns] or ones then columns), with that constant as a vector; null otherwise.
    /// </summary>
    private (OnnxProto.NodeProto Add, HostTensor Bias)? FollowingBiasAdd(OnnxProto.NodeProto node, long[] shape)
    {
        if (SoleConsumer(node.Output[0]) is not { OpType: "Add", Domain.Length: 0, Input.Count: 2 } add || add.Input[0] == add.Input[1])
        {
            return null;
        }

        var other = add.Input[0] == node.Output[0] ? add.Input[1] : add.Input[0];
        if (!_values.TryGetValue(other, out var b) || b.Constant is not { IsFloat: true } c || b.Shape.Length == 0 || b.Shape.Length > shape.Length
            || b.Shape[^1] != shape[^1] || b.Shape[..^1].Any(d => d != 1))
        {
            return null;
        }

        return (add, c);
    }
}
