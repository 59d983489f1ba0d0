using Batchwise.Cuda.Kernels;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Reductions over any set of axes (one thread per output element).</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> ReductionLowerings()
    {
        foreach (var op in new[] { "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp" })
        {
            yield return (op, new((c, n, i, a) => c.LowerReduce(n, i, a)));
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
                Alias(node, 0, x, x.Shape);
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
        var y = Output(node, 0, x.Type, outShape);
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
        Kernel(KernelSource.Reduce(St(x), kind, x.Shape, reduced), y.Count, Dev(y), Dev(x));
    }

}
