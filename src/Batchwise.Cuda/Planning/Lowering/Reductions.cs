using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Reductions over any set of axes, read in the order the value is stored (a channels-last activation's spatial mean runs
/// with threads along the channels, no NCHW copy first): coalesced kernels where the reduced axes are one contiguous run,
/// else one thread per output element. A coalesced reduction of an elementwise chain over one value (a QDQ model's
/// DequantizeLinear of an int8 activation before its global pooling or squeeze-excite mean) reads that value and applies
/// the chain as it loads each element: the chain's result is never written (ResNet-50 int8 at b=256 wrote and read
/// back 51 MB of float16 for the 26 MB of int8 it pools).
/// </summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> ReductionLowerings()
    {
        foreach (var op in new[] { "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp" })
        {
            yield return (op, new((c, n, i, a) => c.LowerReduce(n, i, a), InputLayout.Pending));
        }
    }

    private void LowerReduce(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        var rank = x.Shape.Length;
        var axesFromInput = _model.Opset >= 18 || (node.OpType == "ReduceSum" && _model.Opset >= 13);
        var axes = axesFromInput ? ins.ElementAtOrDefault(1)?.Constant?.AsLongs() : attrs.Ints("axes");
        var keep = attrs.Int("keepdims", 1) != 0;
        var reduced = new bool[rank];
        if (axes is null || axes.Length == 0)
        {
            if (attrs.Int("noop_with_empty_axes", 0) != 0)
            {
                Alias(node, 0, Materialize(x), x.Shape);
                return;
            }

            Array.Fill(reduced, true);
        }
        else
        {
            foreach (var a in axes)
            {
                reduced[Shapes.Axis(a, rank)] = true;
            }
        }

        var outShape = keep ? x.Shape.Select((s, d) => reduced[d] ? 1 : s).ToArray() : x.Shape.Where((_, d) => !reduced[d]).ToArray();

        // A channels-last value is reduced as stored: kept dimensions come out in physical order, which is the output's
        // own order when the dimensions are kept (the output is channels-last too) or when the channel axis is not kept
        // together with a spatial one; otherwise it is brought to NCHW first.
        if (x.Nhwc && !keep && !reduced[1] && (!reduced[2] || !reduced[3]))
        {
            x = Nchw(x);
        }

        var y = Output(node, 0, x.Type, outShape, x.Nhwc && keep);
        var kind = node.OpType switch
        {
            "ReduceMean" => "mean",
            "ReduceSum" => "sum",
            "ReduceMax" => "max",
            "ReduceMin" => "min",
            "ReduceProd" => "prod",
            "ReduceL2" => "l2",
            "ReduceL1" => "l1",
            "ReduceLogSum" => "logsum",
            "ReduceLogSumExp" => "logsumexp",
            _ => "sumsquare",
        };
        EmitReduce(x, kind, x.Nhwc ? [reduced[0], reduced[2], reduced[3], reduced[1]] : reduced, y);
    }

    /// <summary>
    /// y = the reduction of x over the flagged axes of its physical shape, kept axes in physical order: a coalesced kernel
    /// where the reduced axes form one contiguous run once size-1 axes are dropped and neighbours merged (a block per
    /// [outer, chunk of inner] with lanes along the inner axis, or a warp or block per row), else one thread per output.
    /// </summary>
    private void EmitReduce(PlanValue x, string kind, bool[] physReduced, PlanValue y)
    {
        var phys = Phys(x);
        var type = St(x);
        if (KernelSource.CoalescedReduction(kind, type) && MergeReduced(phys, physReduced) is var (outer, reduced, inner) && reduced > 1)
        {
            // Read through a one-value chain where its stored elements are no wider than its result (never more bytes).
            var chain = OneLeafChain(x, x.Nhwc, eachElementOnce: true) is { } c && St(c.Leaf).SizeOf() <= type.SizeOf() ? c : ((PlanValue Leaf, string Statements, string Result)?)null;
            var input = chain is { } f ? new ReductionInput(St(f.Leaf), f.Statements, f.Result) : null;
            var source = chain?.Leaf ?? Materialize(x);
            if (inner == 1)
            {
                if (reduced >= 2048)
                {
                    Kernel(KernelSource.ReduceRows(type, kind, KernelSource.BlockSize, outer, reduced, input), outer * KernelSource.BlockSize, Dev(y), Dev(source));
                }
                else
                {
                    WarpKernel(KernelSource.ReduceRows(type, kind, 32, outer, reduced, input), outer, Dev(y), Dev(source));
                }

                return;
            }

            var vector = KernelSource.ReduceColumnVector(St(source), inner);
            var splits = KernelSource.ReduceColumnSplits(vector, outer, reduced, inner);
            if (splits == 1)
            {
                Kernel(KernelSource.ReduceColumns(type, kind, vector, outer, reduced, inner, input: input), KernelSource.ReduceColumnsThreads(vector, outer, inner), Dev(y), Dev(source));
                return;
            }

            // Few blocks for a long reduced axis (a batch-1 spatial mean): partial results per range, then one pass over them.
            var partials = new PlanValue(ElementType.Float, [splits, outer, inner], null, NewBuffer(splits * outer * inner * sizeof(float), "partial reductions for " + _node).Id);
            Kernel(KernelSource.ReduceColumns(type, kind, vector, outer, reduced, inner, splits, partial: true, input), KernelSource.ReduceColumnsThreads(vector, outer, inner, splits), Dev(partials), Dev(source));
            WarpKernel(KernelSource.ReduceSplits(type, kind, splits, outer, reduced, inner), outer * inner, Dev(y), Dev(partials));
            return;
        }

        x = Materialize(x);
        Kernel(KernelSource.Reduce(type, kind, phys, physReduced), y.Count, Dev(y), Dev(x));
    }

    /// <summary>
    /// A shape and its reduced axes as [outer, reduced, inner] (size-1 axes dropped, neighbours with the same flag merged),
    /// or null where the reduced axes are not one contiguous run or a dimension is empty.
    /// </summary>
    internal static (long Outer, long Reduced, long Inner)? MergeReduced(long[] shape, bool[] reduced)
    {
        if (shape.Any(d => d == 0))
        {
            return null;
        }

        var runs = new List<(bool Reduced, long Size)>();
        for (var d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1)
            {
                continue;
            }

            if (runs.Count > 0 && runs[^1].Reduced == reduced[d])
            {
                runs[^1] = (reduced[d], runs[^1].Size * shape[d]);
            }
            else
            {
                runs.Add((reduced[d], shape[d]));
            }
        }

        var at = runs.FindIndex(r => r.Reduced);
        if (runs.Count(r => r.Reduced) > 1 || at < 0)
        {
            return at < 0 ? (runs.Aggregate(1L, (a, r) => a * r.Size), 1, 1) : null;
        }

        var outer = runs.Take(at).Aggregate(1L, (a, r) => a * r.Size);
        var inner = runs.Skip(at + 1).Aggregate(1L, (a, r) => a * r.Size);
        return (outer, runs[at].Size, inner);
    }

}
