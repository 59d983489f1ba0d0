using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Constant folding for the planner: the registry's host implementations (<see cref="Operators.HostEvaluator"/>) over plan values.</summary>
internal static class HostEvaluator
{
    /// <summary>
    /// The folded outputs, or null when the node must run on the device. Cheap operators fold whenever their inputs
    /// are known; any operator folds (within a size cap) when <paramref name="needed"/>: its result decides a shape.
    /// </summary>
    public static HostTensor[]? TryEvaluate(OnnxProto.NodeProto node, PlanValue?[] inputs, long opset, bool needed = false) =>
        Operators.HostEvaluator.TryEvaluate(node, opset, [.. inputs.Select(v => v is null ? null : new ConcreteValue(v.Type, v.Shape, v.Constant))], needed);

    /// <summary>Flatten's 2-D shape.</summary>
    public static long[] FlattenShape(long[] shape, long axis)
    {
        var a = axis < 0 ? axis + shape.Length : axis;
        return [Shapes.Product(shape.Take((int)a)), Shapes.Product(shape.Skip((int)a))];
    }
}
