using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Normalizations: BatchNormalization (an elementwise expression, or folded into the convolution before it), softmax, layer normalization.</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> NormalizationLowerings()
    {
        yield return ("BatchNormalization", new((c, n, i, a) => c.LowerElementwise(n, i, a), InputLayout.Pending, (n, a, _) => a.Int("training_mode", 0) != 0 || n.Output.Count(o => o.Length > 0) > 1 ? "training mode (running mean/variance outputs)" : null));
        yield return ("Softmax", new((c, n, i, a) => c.LowerSoftmax(n, i[0]!, a, log: false)));
        yield return ("LogSoftmax", new((c, n, i, a) => c.LowerSoftmax(n, i[0]!, a, log: true)));
        yield return ("LayerNormalization", new((c, n, i, a) => c.LowerLayerNorm(n, i, a)));
    }

    private void LowerSoftmax(OnnxProto.NodeProto node, PlanValue x, NodeAttributes attrs, bool log)
    {
        RequireFloat(x);
        var opset = _model.Opset;
        var rank = x.Shape.Length;
        var a = Shapes.Axis(attrs.Int("axis", opset >= 13 ? -1 : 1), rank);
        var y = Output(node, 0, x.Type, x.Shape);
        long axisSize, inner;
        if (opset >= 13)
        {
            (axisSize, inner) = (x.Shape[a], Shapes.Product(x.Shape.Skip(a + 1)));
        }
        else
        {
            (axisSize, inner) = (Shapes.Product(x.Shape.Skip(a)), 1);
        }

        var rows = axisSize == 0 ? 0 : x.Count / axisSize;
        if (axisSize <= 32 && inner > 1)
        {
            Kernel(KernelSource.SoftmaxShortAxis(St(x), rows, axisSize, inner, log), rows, Dev(y), Dev(x));
        }
        else
        {
            WarpKernel(KernelSource.Softmax(St(x), rows, axisSize, inner, log), rows, Dev(y), Dev(x));
        }
    }

    private void LowerLayerNorm(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var x = ins[0]!;
        RequireFloat(x);
        var a = Shapes.Axis(attrs.Int("axis", -1), x.Shape.Length);
        var rows = Shapes.Product(x.Shape.Take(a));
        var cols = Shapes.Product(x.Shape.Skip(a));
        var scale = ins[1]!;
        var bias = ins.ElementAtOrDefault(2);
        if (cols % scale.Count != 0 || (bias is not null && cols % bias.Count != 0))
        {
            throw new BatchwiseException("LayerNormalization scale/bias must cover the normalised dimensions", "Use scale and bias of the normalised shape.");
        }

        var y = Output(node, 0, x.Type, x.Shape);
        var statShape = x.Shape.Select((s, d) => d < a ? s : 1).ToArray();
        var mean = node.Output.Count > 1 && node.Output[1].Length > 0 ? Dev(Output(node, 1, ElementType.Float, statShape)) : -1;
        var inv = node.Output.Count > 2 && node.Output[2].Length > 0 ? Dev(Output(node, 2, ElementType.Float, statShape)) : -1;
        WarpKernel(KernelSource.LayerNorm(St(x), St(scale), St(ElementType.Float), rows, cols, attrs.Float("epsilon", 1e-5), bias is not null, scale.Count, bias?.Count ?? 1), rows, Dev(y), Dev(x), Dev(scale), bias is null ? -1 : Dev(bias), mean, inv);
    }
}
