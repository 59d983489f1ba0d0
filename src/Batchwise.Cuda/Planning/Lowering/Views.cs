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

    private void LowerReshape(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs) =>
        Alias(node, 0, ins[0]!, Shapes.ReshapeTarget(ins[0]!.Shape, _model.Opset >= 5 ? Const(ins[1], "shape").AsLongs() : attrs.Ints("shape")!, attrs.Int("allowzero", 0) != 0));
}
