using System.Globalization;
using System.Text;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Max and average pooling over windows, and global pooling (a reduction over the spatial axes).</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> PoolingLowerings()
    {
        // Pending: a pool may apply its input's elementwise chain as it reads (PoolChainOf); otherwise it writes it out first.
        yield return ("MaxPool", new((c, n, i, a) => c.LowerPool(n, i[0]!, a, true), InputLayout.Pending, AutoPadCheck));
        yield return ("AveragePool", new((c, n, i, a) => c.LowerPool(n, i[0]!, a, false), InputLayout.Pending, AutoPadCheck));
        yield return ("GlobalAveragePool", new((c, n, i, _) => c.LowerGlobalPool(n, i[0]!, "mean"), InputLayout.AsStored));
        yield return ("GlobalMaxPool", new((c, n, i, _) => c.LowerGlobalPool(n, i[0]!, "max"), InputLayout.AsStored));
    }

    private void LowerGlobalPool(OnnxProto.NodeProto node, PlanValue x, string kind)
    {
        var reduced = x.Nhwc ? [false, true, true, false] : x.Shape.Select((_, d) => d >= 2).ToArray();
        var y = Output(node, 0, x.Type, x.Shape.Select((s, d) => d >= 2 ? 1 : s).ToArray(), x.Nhwc);
        EmitReduce(x, kind, reduced, y);
    }

    private void LowerPool(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs, bool max)
    {
        var withIndices = max && node.Output.Count > 1 && node.Output[1].Length > 0;
        var chained = withIndices ? null : PoolChainOf(x);
        x = chained is null ? Materialize(x) : x;
        var r = x.Shape.Length - 2;
        if (r < 1 || r > 3)
        {
            throw new BatchwiseException($"pooling of rank {x.Shape.Length} is not supported (1-d to 3-d)", "Use 1-d to 3-d pooling.");
        }

        var kernel = attrs.Ints("kernel_shape")!;
        var strides = attrs.Ints("strides") ?? Enumerable.Repeat(1L, r).ToArray();
        var dilations = attrs.Ints("dilations") ?? Enumerable.Repeat(1L, r).ToArray();
        var inSpatial = x.Shape.Skip(2).ToArray();
        var autoPad = attrs.String("auto_pad", "NOTSET");
        var (pb, pe) = AutoPads(autoPad, inSpatial, kernel, strides, dilations, attrs.Ints("pads"));
        var ceil = attrs.Int("ceil_mode", 0) != 0;
        var outSpatial = new long[r];
        for (var d = 0; d < r; d++)
        {
            var span = inSpatial[d] + pb[d] + pe[d] - (((kernel[d] - 1) * dilations[d]) + 1);
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                outSpatial[d] = (inSpatial[d] + strides[d] - 1) / strides[d];
            }
            else if (ceil)
            {
                outSpatial[d] = (long)Math.Ceiling(span / (double)strides[d]) + 1;
                if ((outSpatial[d] - 1) * strides[d] >= inSpatial[d] + pb[d])
                {
                    outSpatial[d]--;
                }
            }
            else
            {
                outSpatial[d] = (span / strides[d]) + 1;
            }
        }

        var outShape = new[] { x.Shape[0], x.Shape[1] }.Concat(outSpatial).ToArray();
        if (withIndices)
        {
            // Indices count in NCHW order: the pooling reads an NCHW input.
            x = Nchw(x);
            var values = Output(node, 0, x.Type, outShape);
            var indices = Output(node, 1, ElementType.Int64, outShape);
            Kernel(KernelSource.Pool(St(x), true, x.Shape[0] * x.Shape[1], inSpatial, outSpatial, kernel, strides, pb, pe, dilations, false, indices: true, columnMajor: attrs.Int("storage_order", 0) != 0), values.Count, Dev(values), Dev(indices), Dev(x));
            return;
        }

        var y = Output(node, 0, x.Type, outShape, x.Nhwc);
        var code = KernelSource.Pool(St(x), max, x.Shape[0] * x.Shape[1], inSpatial, outSpatial, kernel, strides, pb, pe, dilations, attrs.Int("count_include_pad", 0) != 0, x.Nhwc, x.Shape[1], chain: chained?.Chain);
        Kernel(code, y.Count / KernelSource.PoolVector(St(x), x.Nhwc, x.Shape[1], false), [Dev(y), Dev(chained?.Data ?? x), .. (chained?.Channels ?? []).Select(Dev)]);
    }

    /// <summary>
    /// A pending channels-last input whose chain reads one value of its own shape (the data) and per-channel vectors (a
    /// bias): the pooling kernel applies the chain to each value it reads (<see cref="KernelSource.PoolChain"/>) instead
    /// of the chain being written out first, one pass over the tensor fewer (an int8 model's stem: bias and the
    /// QuantizeLinear / DequantizeLinear rounding before its max pool). Null for any other input (it is materialized).
    /// </summary>
    private (PlanValue Data, List<PlanValue> Channels, KernelSource.PoolChain Chain)? PoolChainOf(PlanValue x)
    {
        if (x.Pending is not { } p || !x.Nhwc || x.Shape.Length != 4 || p.Statements.Count > 8)
        {
            return null;
        }

        var channels = x.Shape[1];
        var data = p.Leaves.Where(l => l.Shape.SequenceEqual(x.Shape)).ToList();
        var perChannel = p.Leaves.Where(l => !l.Shape.SequenceEqual(x.Shape)).ToList();
        if (data is not [var d] || !d.Nhwc || d.Pending is not null || d.ViewStrides is not null || St(d.Type) != St(x.Type)
            || perChannel.Any(l => l.Pending is not null || l.ViewStrides is not null || l.Count != channels || !Shapes.RightAlign(l.Shape, 4).SequenceEqual(new long[] { 1, channels, 1, 1 })))
        {
            return null;
        }

        var names = new Dictionary<int, string> { [LeafId(d)] = "x0" };
        for (var k = 0; k < perChannel.Count; k++)
        {
            names[LeafId(perChannel[k])] = "x" + (k + 1).ToString(CultureInfo.InvariantCulture);
        }

        var statements = new StringBuilder();
        foreach (var (_, code) in p.Statements)
        {
            AppendWithLeaves(statements, code, id => names[id]);
            statements.Append(' ');
        }

        return (d, perChannel, new KernelSource.PoolChain([.. perChannel.Select(St)], statements.ToString(), p.Result));
    }

}
