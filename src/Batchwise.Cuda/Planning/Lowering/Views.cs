using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Operators that only relabel a value (views of the same buffer) and operators the planner always folds on the host.</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> ViewLowerings()
    {
        yield return ("Identity", new((c, n, i, _) => c.Alias(n, 0, i[0]!, i[0]!.Shape), InputLayout.Pending));
        yield return ("Dropout", new((c, n, i, _) => c.Alias(n, 0, i[0]!, i[0]!.Shape), InputLayout.AsStored, (n, _, _) => n.Output.Count > 1 && n.Output[1].Length > 0 ? "the mask output" : null));
        yield return ("Reshape", new((c, n, i, a) => c.LowerReshape(n, i, a)));
        yield return ("Flatten", new((c, n, i, a) => c.Alias(n, 0, i[0]!, HostEvaluator.FlattenShape(i[0]!.Shape, a.Int("axis", 1)))));
        yield return ("Squeeze", new((c, n, i, a) => c.Alias(n, 0, i[0]!, Shapes.Squeeze(i[0]!.Shape, c._model.Opset >= 13 ? i.ElementAtOrDefault(1)?.Constant?.AsLongs() : a.Ints("axes")))));
        yield return ("Unsqueeze", new((c, n, i, a) => c.Alias(n, 0, i[0]!, Shapes.Unsqueeze(i[0]!.Shape, c._model.Opset >= 13 ? Const(i[1], "axes").AsLongs() : a.Ints("axes")!))));

        // Values the planner folds on the host whenever it meets them (their inputs are shapes or constants).
        foreach (var op in new[] { "Constant", "Shape", "Size", "ConstantOfShape", "Range" })
        {
            yield return (op, new((_, n, _, _) => throw new BatchwiseException($"{n.OpType} needs its inputs on the host", "This is a bug in the cuda engine's planner."), InputLayout.Nchw, ConstantCheck));
        }
    }

    private static string? ConstantCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset)
    {
        if (node.OpType != "Constant")
        {
            return null;
        }

        if (attrs.Has("sparse_value") || attrs.Has("value_string") || attrs.Has("value_strings"))
        {
            return "a sparse or string value";
        }

        return attrs.Get("value") is { } value && !OperatorSupport.Stores((ElementType)value.T.DataType) ? $"a {((ElementType)value.T.DataType).ShortName()} value" : null;
    }

    /// <summary>
    /// Transpose, Split, Slice (constant starts, ends and steps) and Gather at a constant index as strided views of their input (no copy), where the input is a
    /// strided view already or a row-major value that feeds a fused attention block (<see cref="FeedsAttention"/>):
    /// timm's packed QKV (Reshape, Transpose(2, 0, 3, 1, 4), Split, Squeeze; K transposed again) and Hugging Face's
    /// separate projections (Reshape, Transpose) reach the attention kernel as strides over the projection's output.
    /// Only in plans whose attention can fuse (half precision, sm_80 and later); a consumer other than the attention
    /// kernel gets the view copied row-major (<c>Materialize</c>), once.
    /// </summary>
    private bool TryLowerView(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        if (node.OpType is not ("Transpose" or "Split" or "Gather" or "Slice") || !Half || _target.ComputeCapability < 80 || ins.Length == 0
            || ins[0] is not { } x || x.Constant is not null || x.Nhwc || node.Output.Any(_graphOutputs.Contains))
        {
            return false;
        }

        if (x.ViewStrides is null && !node.Output.Any(o => o.Length > 0 && FeedsAttention(o)))
        {
            return false;
        }

        x = x.Pending is null ? x : Materialize(x);
        if (x.Buffer < 0)
        {
            return false;
        }

        var strides = x.ViewStrides ?? KernelSource.Strides(x.Shape);
        switch (node.OpType)
        {
            case "Transpose":
                var perm = attrs.Ints("perm") ?? Enumerable.Range(0, x.Shape.Length).Reverse().Select(i => (long)i).ToArray();
                long[] shape = [.. perm.Select(p => x.Shape[p])], moved = [.. perm.Select(p => strides[p])];
                if (x.ViewStrides is null && PreferNhwc(shape) && SameOrder(shape, moved, MemoryStrides(new PlanValue(x.Type, shape) { Nhwc = true })))
                {
                    return false; // LowerTranspose relabels it channels-last, for free
                }

                _values[node.Output[0]] = StridedView(x, shape, moved, x.ViewOffset);
                return true;
            case "Split":
                var (a, sizes) = SplitSizes(node, ins, attrs);
                long start = 0;
                for (var i = 0; i < node.Output.Count && i < sizes.Length; i++)
                {
                    var part = (long[])x.Shape.Clone();
                    part[a] = sizes[i];
                    if (node.Output[i].Length > 0)
                    {
                        _values[node.Output[i]] = StridedView(x, part, strides, x.ViewOffset + (start * strides[a]));
                    }

                    start += sizes[i];
                }

                return true;
            case "Slice":
                var (sliced, first, step) = SliceParameters(ins, attrs);
                if (sliced.Any(e => e == 0))
                {
                    return false;
                }

                _values[node.Output[0]] = StridedView(x, sliced, [.. strides.Select((s, i) => s * step[i])], x.ViewOffset + first.Select((f, i) => f * strides[i]).Sum());
                return true;
            default:
                // Gather of one constant index: the axis dropped (a scalar index) or kept with one entry.
                if (ins.ElementAtOrDefault(1)?.Constant is not { Count: 1, IsFloat: false } index || index.Shape.Length > 1)
                {
                    return false;
                }

                var axis = Shapes.Axis(attrs.Int("axis", 0), x.Shape.Length);
                var at = index.Int(0);
                at = at < 0 ? at + x.Shape[axis] : at;
                if (at < 0 || at >= x.Shape[axis])
                {
                    return false;
                }

                var kept = index.Shape.Length == 1;
                long[] outShape = [.. x.Shape[..axis], .. kept ? [1L] : Array.Empty<long>(), .. x.Shape[(axis + 1)..]];
                long[] outStrides = [.. strides[..axis], .. kept ? [strides[axis]] : Array.Empty<long>(), .. strides[(axis + 1)..]];
                _values[node.Output[0]] = StridedView(x, outShape, outStrides, x.ViewOffset + (at * strides[axis]));
                return true;
        }
    }

    /// <summary>
    /// <paramref name="x"/> read as <paramref name="shape"/> (numpy broadcasting: its axes of 1, and missing leading ones,
    /// repeat with stride 0) without a copy: a pending value is computed first; a strided view keeps its strides.
    /// </summary>
    private PlanValue BroadcastView(PlanValue x, long[] shape)
    {
        if (x.Pending is not null)
        {
            x = Materialize(x);
        }

        var strides = x.ViewStrides ?? KernelSource.Strides(x.Shape);
        var lead = shape.Length - x.Shape.Length;
        var composed = new long[shape.Length];
        for (var i = lead; i < shape.Length; i++)
        {
            composed[i] = x.Shape[i - lead] == shape[i] ? strides[i - lead] : 0;
        }

        return StridedView(x, shape, composed, x.ViewOffset);
    }

    /// <summary>A view of <paramref name="source"/>'s buffer: a plain value where the strides are row-major from offset 0, else a strided view.</summary>
    private static PlanValue StridedView(PlanValue source, long[] shape, long[] strides, long offset)
    {
        var rowMajor = offset == 0 && SameOrder(shape, strides, KernelSource.Strides(shape));
        return new PlanValue(source.Type, shape, null, source.Buffer) { ViewStrides = rowMajor ? null : strides, ViewOffset = rowMajor ? 0 : offset };
    }

    /// <summary>
    /// The strides that read a strided value of <paramref name="shape"/> as <paramref name="target"/> (the same elements
    /// in the same row-major order), or null where no strides can (axes merged across a gap); as torch's view rules.
    /// </summary>
    internal static long[]? Restride(long[] shape, long[] strides, long[] target)
    {
        if (shape.Length == 0 || target.Length == 0 || Tensor.ElementCountOf(shape) == 0 || Tensor.ElementCountOf(shape) != Tensor.ElementCountOf(target))
        {
            return null;
        }

        var result = new long[target.Length];
        var t = target.Length - 1;
        var chunkStride = strides[^1];
        long shapeCount = 1, targetCount = 1;
        for (var d = shape.Length - 1; d >= 0; d--)
        {
            shapeCount *= shape[d];
            if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != shapeCount * chunkStride))
            {
                while (t >= 0 && (targetCount < shapeCount || target[t] == 1))
                {
                    result[t] = targetCount * chunkStride;
                    targetCount *= target[t];
                    t--;
                }

                if (targetCount != shapeCount)
                {
                    return null;
                }

                if (d > 0)
                {
                    chunkStride = strides[d - 1];
                    shapeCount = 1;
                    targetCount = 1;
                }
            }
        }

        return t == -1 ? result : null;
    }

    /// <summary>
    /// Whether <paramref name="name"/> reaches an operand of an attention block (Q or K^T of its first product, V of its
    /// second) through view operators (Transpose, Split, Slice, Squeeze, Unsqueeze, Reshape, Flatten, Identity, Gather) and
    /// scalings (Mul, Div): the graph's structure only; the attention lowering checks the rest.
    /// </summary>
    private bool FeedsAttention(string name)
    {
        var todo = new Stack<string>([name]);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (todo.TryPop(out var n))
        {
            if (!seen.Add(n) || !_consumers.TryGetValue(n, out var users))
            {
                continue;
            }

            foreach (var u in users)
            {
                if ((u.OpType is "Transpose" or "Split" or "Slice" or "Squeeze" or "Unsqueeze" or "Reshape" or "Flatten" or "Identity" or "Gather" or "Mul" or "Div" && u.Input[0] == n)
                    || (u.OpType == "Mul" && u.Input.Count == 2 && u.Input[1] == n))
                {
                    foreach (var o in u.Output.Where(o => o.Length > 0))
                    {
                        todo.Push(o);
                    }
                }
                else if (u.OpType == "MatMul" && u.Input.Count == 2 && ((u.Input[1] == n && AfterSoftmax(u.Input[0])) || LeadsToSoftmax(u.Output[0])))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>Whether a scores product's output reaches a Softmax through a scale, a mask Add, and casts or identities, each the sole consumer.</summary>
    private bool LeadsToSoftmax(string name)
    {
        for (var i = 0; i < 6 && SoleConsumer(name) is { } next; i++)
        {
            if (next.OpType == "Softmax")
            {
                return true;
            }

            if (next.OpType is not ("Mul" or "Div" or "Add" or "Cast" or "Identity" or "Dropout"))
            {
                return false;
            }

            name = next.Output[0];
        }

        return false;
    }

    /// <summary>Whether <paramref name="name"/> is a Softmax's output, perhaps through casts, identities and SDPA's Where(IsNaN(p), 0, p).</summary>
    private bool AfterSoftmax(string name)
    {
        for (var i = 0; i < 4 && Producer(name) is { } p; i++)
        {
            if (p.OpType == "Softmax")
            {
                return true;
            }

            if (p is { OpType: "Where", Input.Count: 3 } && Producer(p.Input[0]) is { OpType: "IsNaN" } isNaN && isNaN.Input[0] == p.Input[2])
            {
                name = p.Input[2];
                continue;
            }

            if (p.OpType is not ("Cast" or "Identity" or "Dropout"))
            {
                return false;
            }

            name = p.Input[0];
        }

        return false;
    }

    /// <summary>The node that computes <paramref name="name"/> (null for inputs and initializers).</summary>
    private OnnxProto.NodeProto? Producer(string name) => _facts.Producers.GetValueOrDefault(name);

    private void LowerReshape(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs) =>
        Alias(node, 0, ins[0]!, Shapes.ReshapeTarget(ins[0]!.Shape, _model.Opset >= 5 ? Const(ins[1], "shape").AsLongs() : attrs.Ints("shape")!, attrs.Int("allowzero", 0) != 0));
}
