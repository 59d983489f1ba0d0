using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Max and average pooling over windows, and global pooling (a reduction over the spatial axes).</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> PoolingLowerings()
    {
        yield return ("MaxPool", new((c, n, i, a) => c.LowerPool(n, i[0]!, a, true), InputLayout.AsStored, AutoPadCheck));
        yield return ("AveragePool", new((c, n, i, a) => c.LowerPool(n, i[0]!, a, false), InputLayout.AsStored, AutoPadCheck));
        // Pending: a coalesced global pooling reads an elementwise chain through (EmitReduce); the rest materializes it.
        yield return ("GlobalAveragePool", new((c, n, i, _) => c.LowerGlobalPool(n, i[0]!, "mean"), InputLayout.Pending));
        yield return ("GlobalMaxPool", new((c, n, i, _) => c.LowerGlobalPool(n, i[0]!, "max"), InputLayout.Pending));
    }

    private void LowerGlobalPool(OnnxProto.NodeProto node, PlanValue x, string kind)
    {
        var reduced = x.Nhwc ? [false, true, true, false] : x.Shape.Select((_, d) => d >= 2).ToArray();
        var y = Output(node, 0, x.Type, x.Shape.Select((s, d) => d >= 2 ? 1 : s).ToArray(), x.Nhwc);
        EmitReduce(x, kind, reduced, y);
    }

    private void LowerPool(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs, bool max)
    {
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
        if (max && node.Output.Count > 1 && node.Output[1].Length > 0)
        {
            // Indices count in NCHW order: the pooling reads an NCHW input.
            x = Nchw(x);
            var values = Output(node, 0, x.Type, outShape);
            var indices = Output(node, 1, ElementType.Int64, outShape);
            Kernel(KernelSource.Pool(St(x), true, x.Shape[0] * x.Shape[1], inSpatial, outSpatial, kernel, strides, pb, pe, dilations, false, indices: true, columnMajor: attrs.Int("storage_order", 0) != 0), values.Count, Dev(values), Dev(indices), Dev(x));
            return;
        }

        var y = Output(node, 0, x.Type, outShape, x.Nhwc);
        Kernel(KernelSource.Pool(St(x), max, x.Shape[0] * x.Shape[1], inSpatial, outSpatial, kernel, strides, pb, pe, dilations, attrs.Int("count_include_pad", 0) != 0, x.Nhwc, x.Shape[1]), y.Count / KernelSource.PoolVector(St(x), x.Nhwc, x.Shape[1], false), Dev(y), Dev(x));
    }

}
