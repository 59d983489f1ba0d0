using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Indexing operators: gathers and scatters by index tensors, tiling and depth/space rearrangements (strided copies),
/// one-hot, triangular masks, cumulative sums, arg-extremes and top-k.
/// </summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> IndexingLowerings()
    {
        yield return ("GatherElements", new((c, n, i, a) => c.LowerGatherElements(n, i, a)));
        yield return ("GatherND", new((c, n, i, a) => c.LowerGatherND(n, i, a)));
        yield return ("ScatterElements", new((c, n, i, a) => c.LowerScatterElements(n, i, a), InputLayout.Nchw, ScatterCheck));
        yield return ("ScatterND", new((c, n, i, a) => c.LowerScatterND(n, i, a), InputLayout.Nchw, ScatterCheck));
        yield return ("Tile", new((c, n, i, _) => c.LowerTile(n, i)));
        yield return ("DepthToSpace", new((c, n, i, a) => c.LowerDepthToSpace(n, i[0]!, a), InputLayout.Nchw, (_, a, _) => a.String("mode", "DCR") is "DCR" or "CRD" ? null : $"mode '{a.String("mode", "DCR")}'"));
        yield return ("SpaceToDepth", new((c, n, i, a) => c.LowerSpaceToDepth(n, i[0]!, a)));
        yield return ("OneHot", new((c, n, i, a) => c.LowerOneHot(n, i, a)));
        yield return ("Trilu", new((c, n, i, a) => c.LowerTrilu(n, i, a)));
        yield return ("CumSum", new((c, n, i, a) => c.LowerCumSum(n, i, a)));
        yield return ("ArgMax", new((c, n, i, a) => c.LowerArgExtreme(n, i[0]!, a, max: true)));
        yield return ("ArgMin", new((c, n, i, a) => c.LowerArgExtreme(n, i[0]!, a, max: false)));
        yield return ("TopK", new((c, n, i, a) => c.LowerTopK(n, i, a)));
        yield return ("NonZero", new((c, n, i, _) => c.LowerNonZero(n, i)));
    }

    private static string? ScatterCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset)
    {
        var reduction = attrs.String("reduction", "none");
        return reduction is "none" or "add" or "mul" or "max" or "min" ? null : $"reduction '{reduction}'";
    }

    private void LowerGatherElements(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (data, idx) = (ins[0]!, ins[1]!);
        var axis = Shapes.Axis(attrs.Int("axis", 0), data.Shape.Length);
        var y = Output(node, 0, data.Type, idx.Shape);
        if (y.Count > 0)
        {
            Kernel(KernelSource.GatherElements(St(data).SizeOf(), idx.Type, data.Shape, idx.Shape, axis), y.Count, Dev(y), Dev(data), Dev(idx));
        }
    }

    private void LowerGatherND(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (data, idx) = (ins[0]!, ins[1]!);
        var b = (int)attrs.Int("batch_dims", 0);
        var k = (int)idx.Shape[^1];
        if (b + k > data.Shape.Length)
        {
            throw new BatchwiseException($"GatherND indexes {k} dimensions after {b} batch dimensions of a rank-{data.Shape.Length} tensor", "Check the model's shapes.");
        }

        var shape = idx.Shape[..^1].Concat(data.Shape.Skip(b + k)).ToArray();
        var y = Output(node, 0, data.Type, shape);
        if (y.Count > 0)
        {
            var batches = Shapes.Product(idx.Shape.Take(b));
            var rows = Shapes.Product(idx.Shape[b..^1]);
            Kernel(KernelSource.GatherND(St(data).SizeOf(), idx.Type, data.Shape, batches, rows, b, k), y.Count, Dev(y), Dev(data), Dev(idx));
        }
    }

    /// <summary>A copy of <paramref name="data"/> in a new output buffer (what a scatter then writes into).</summary>
    private PlanValue CopiedOutput(OnnxProto.NodeProto node, PlanValue data)
    {
        var y = Output(node, 0, data.Type, data.Shape);
        var strides = KernelSource.Strides(data.Shape);
        ViewCopy(data, data.Shape, strides, 0, y, strides, 0);
        return y;
    }

    private void LowerScatterElements(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (data, idx, updates) = (ins[0]!, ins[1]!, ins[2]!);
        var axis = Shapes.Axis(attrs.Int("axis", 0), data.Shape.Length);
        var reduction = attrs.String("reduction", "none");
        var y = CopiedOutput(node, data);
        if (idx.Count > 0)
        {
            Kernel(KernelSource.ScatterElements(St(data), idx.Type, data.Shape, idx.Shape, axis, reduction), KernelSource.ScatterThreads(idx.Count, reduction), Dev(y), Dev(idx), Dev(updates));
        }
    }

    private void LowerScatterND(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (data, idx, updates) = (ins[0]!, ins[1]!, ins[2]!);
        var reduction = attrs.String("reduction", "none");
        var k = (int)idx.Shape[^1];
        var rows = Shapes.Product(idx.Shape[..^1]);
        var y = CopiedOutput(node, data);
        if (updates.Count > 0)
        {
            Kernel(KernelSource.ScatterND(St(data), idx.Type, data.Shape, rows, k, reduction), KernelSource.ScatterThreads(updates.Count, reduction), Dev(y), Dev(idx), Dev(updates));
        }
    }

    /// <summary>Tile as a broadcast copy: the input viewed as [1, d0, 1, d1, ...] expanded to [r0, d0, r1, d1, ...].</summary>
    private void LowerTile(OnnxProto.NodeProto node, PlanValue?[] ins)
    {
        var x = ins[0]!;
        var repeats = Const(ins[1], "repeats").AsLongs();
        if (repeats.Length != x.Shape.Length || repeats.Any(r => r < 0))
        {
            throw new BatchwiseException($"Tile needs one non-negative repeat per dimension of a rank-{x.Shape.Length} tensor, got {repeats.Length}", "Check the model.");
        }

        var y = Output(node, 0, x.Type, x.Shape.Select((d, i) => d * repeats[i]).ToArray());
        var inStrides = KernelSource.Strides(x.Shape);
        var shape = x.Shape.SelectMany((d, i) => new[] { repeats[i], d }).ToArray();
        var src = inStrides.SelectMany(s => new[] { 0L, s }).ToArray();
        ViewCopy(x, shape, src, 0, y, KernelSource.Strides(shape), 0);
    }

    private void LowerDepthToSpace(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs)
    {
        var b = attrs.Int("blocksize", 1);
        var (n, c, h, w) = (x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]);
        var depth = c / (b * b);
        var y = Output(node, 0, x.Type, [n, depth, h * b, w * b]);

        // Copied in the output's order [N, C', H, b, W, b] from the input read as DCR [N, b, b, C', H, W] or CRD [N, C', b, b, H, W].
        long[] s;
        if (attrs.String("mode", "DCR") == "CRD")
        {
            var v = KernelSource.Strides([n, depth, b, b, h, w]);
            s = [v[0], v[1], v[4], v[2], v[5], v[3]];
        }
        else
        {
            var v = KernelSource.Strides([n, b, b, depth, h, w]);
            s = [v[0], v[3], v[4], v[1], v[5], v[2]];
        }

        long[] shape = [n, depth, h, b, w, b];
        ViewCopy(x, shape, s, 0, y, KernelSource.Strides(shape), 0);
    }

    private void LowerSpaceToDepth(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs)
    {
        var b = attrs.Int("blocksize", 1);
        var (n, c, h, w) = (x.Shape[0], x.Shape[1], x.Shape[2] / b, x.Shape[3] / b);
        var y = Output(node, 0, x.Type, [n, c * b * b, h, w]);

        // Copied in the output's order [N, b, b, C, H', W'] from the input read as [N, C, H', b, W', b].
        var v = KernelSource.Strides([n, c, h, b, w, b]);
        long[] shape = [n, b, b, c, h, w];
        ViewCopy(x, shape, [v[0], v[3], v[5], v[1], v[2], v[4]], 0, y, KernelSource.Strides(shape), 0);
    }

    private void LowerOneHot(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var (idx, values) = (ins[0]!, ins[2]!);
        var depth = (long)Const(ins[1], "depth")[0];
        var axis = Shapes.Axis(attrs.Int("axis", -1), idx.Shape.Length + 1);
        var shape = idx.Shape.Take(axis).Append(depth).Concat(idx.Shape.Skip(axis)).ToArray();
        var y = Output(node, 0, values.Type, shape);
        if (y.Count > 0)
        {
            Kernel(KernelSource.OneHot(St(values).SizeOf(), idx.Type, Shapes.Product(idx.Shape.Take(axis)), depth, Shapes.Product(idx.Shape.Skip(axis))), y.Count, Dev(y), Dev(idx), Dev(values));
        }
    }

    private void LowerTrilu(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var k = ins.ElementAtOrDefault(1);
        var y = Output(node, 0, x.Type, x.Shape);
        if (y.Count > 0)
        {
            Kernel(KernelSource.Trilu(St(x).SizeOf(), x.Count, x.Shape[^2], x.Shape[^1], attrs.Int("upper", 1) != 0), y.Count, Dev(y), Dev(x), k is null ? -1 : Dev(k));
        }
    }

    private void LowerCumSum(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var axis = Shapes.Axis((long)Const(ins[1], "axis")[0], x.Shape.Length);
        var y = Output(node, 0, x.Type, x.Shape);
        var (outer, inner) = (Shapes.Product(x.Shape.Take(axis)), Shapes.Product(x.Shape.Skip(axis + 1)));
        if (y.Count > 0)
        {
            Kernel(KernelSource.CumSum(St(x), outer, x.Shape[axis], inner, attrs.Int("exclusive", 0) != 0, attrs.Int("reverse", 0) != 0), outer * inner, Dev(y), Dev(x));
        }
    }

    private void LowerArgExtreme(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs, bool max)
    {
        var axis = Shapes.Axis(attrs.Int("axis", 0), x.Shape.Length);
        var keep = attrs.Int("keepdims", 1) != 0;
        var shape = keep ? x.Shape.Select((d, i) => i == axis ? 1 : d).ToArray() : x.Shape.Where((_, i) => i != axis).ToArray();
        var y = Output(node, 0, ElementType.Int64, shape);
        var (outer, inner) = (Shapes.Product(x.Shape.Take(axis)), Shapes.Product(x.Shape.Skip(axis + 1)));
        if (x.Shape[axis] == 0)
        {
            throw new BatchwiseException($"{node.OpType} over an empty axis has no answer", "Check the model's shapes.");
        }

        if (y.Count > 0)
        {
            Kernel(KernelSource.ArgExtreme(St(x), outer, x.Shape[axis], inner, max, attrs.Int("select_last_index", 0) != 0), outer * inner, Dev(y), Dev(x));
        }
    }

    private void LowerTopK(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var k = _model.Opset >= 10 ? Const(ins[1], "k").AsLongs()[0] : attrs.Int("k", 1);
        var axis = Shapes.Axis(attrs.Int("axis", -1), x.Shape.Length);
        if (k < 0 || k > x.Shape[axis])
        {
            throw new BatchwiseException($"TopK asks for {k} elements of an axis of {x.Shape[axis]}", "Use k between 0 and the axis length.");
        }

        var shape = x.Shape.Select((d, i) => i == axis ? k : d).ToArray();
        var values = node.Output[0].Length > 0 ? Output(node, 0, x.Type, shape) : Temp(x.Type, shape);
        var indices = node.Output.Count > 1 && node.Output[1].Length > 0 ? Output(node, 1, ElementType.Int64, shape) : Temp(ElementType.Int64, shape);
        var (outer, inner) = (Shapes.Product(x.Shape.Take(axis)), Shapes.Product(x.Shape.Skip(axis + 1)));
        if (values.Count > 0)
        {
            WarpKernel(KernelSource.TopK(St(x), outer, x.Shape[axis], inner, k, _model.Opset < 11 || attrs.Int("largest", 1) != 0), outer * inner, Dev(values), Dev(indices), Dev(x));
        }
    }
}
