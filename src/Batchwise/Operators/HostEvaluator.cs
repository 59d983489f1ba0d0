using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>
/// The registry's host reference implementations, for engines and transforms: a node's outputs computed from known
/// inputs (constant folding), and a node's output shapes at concrete input shapes.
/// </summary>
public static class HostEvaluator
{
    /// <summary>Largest result folded for operators that are cheap per element (views, casts, elementwise math).</summary>
    public const long EagerMaxElements = 64L << 20;

    /// <summary>Largest result folded for operators whose host implementation is costly (convolutions, products, reductions).</summary>
    public const long SmallMaxElements = 1L << 16;

    /// <summary>
    /// The outputs of <paramref name="node"/> computed on the host, or null when the registry has no host implementation
    /// for it, an input's value is unknown (Shape and Size need only shapes), or the result would be larger than
    /// <paramref name="maxElements"/> elements (or the operator is costly and not <paramref name="whenNeeded"/>).
    /// </summary>
    /// <param name="node">The node.</param>
    /// <param name="opset">The opset of the node's domain.</param>
    /// <param name="inputs">Per input: its type, shape and (when known) value; null for an absent optional input.</param>
    /// <param name="whenNeeded">True when the value is needed on the host (it decides a shape): costly operators fold too, within <see cref="SmallMaxElements"/>.</param>
    /// <param name="maxElements">Cap on the elements of the outputs.</param>
    public static HostTensor[]? TryEvaluate(OnnxProto.NodeProto node, long opset, IReadOnlyList<ConcreteValue?> inputs, bool whenNeeded = false, long maxElements = EagerMaxElements)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(inputs);
        var schema = OperatorRegistry.Find(node.Domain, node.OpType, opset);
        if (schema?.Evaluate is null || schema.Infer is null || (!schema.FoldsEagerly && !whenNeeded))
        {
            return null;
        }

        var needsValues = !schema.ReadsOnlyShapes;
        for (var i = 0; i < node.Input.Count; i++)
        {
            if (node.Input[i].Length == 0)
            {
                continue;
            }

            if (i >= inputs.Count || inputs[i] is not { } v || (needsValues && v.Value is null))
            {
                return null;
            }
        }

        var padded = Enumerable.Range(0, node.Input.Count).Select(i => i < inputs.Count && node.Input[i].Length > 0 ? inputs[i] : null).ToArray();
        var context = new EvaluationContext(node, schema, opset, padded);
        var limit = schema.FoldsEagerly ? maxElements : Math.Min(maxElements, SmallMaxElements);
        if (schema.HasDataDependentShape)
        {
            // The output size is known only after computing it.
            var computed = schema.Evaluate(context);
            return computed.All(t => t.Count <= limit) ? computed : null;
        }

        for (var k = 0; k < node.Output.Count; k++)
        {
            if (context.HasOutput(k) && Count(context.OutputShape(k)) > limit)
            {
                return null;
            }
        }

        return schema.Evaluate(context);
    }

    /// <summary>
    /// The types and shapes of <paramref name="node"/>'s outputs at concrete input shapes, by the registry's shape
    /// inference (host-valued inputs, such as Reshape's shape, must carry their values). Throws naming the node
    /// when the operator is unknown or its shapes cannot be computed.
    /// </summary>
    public static IReadOnlyList<ConcreteValue> InferShapes(OnnxProto.NodeProto node, long opset, IReadOnlyList<ConcreteValue?> inputs)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(inputs);
        var schema = OperatorRegistry.Find(node.Domain, node.OpType, opset);
        if (schema?.Infer is null)
        {
            throw new BatchwiseException($"No shape inference for operator {node.OpType} at opset {opset}", "The operator is not in Batchwise's registry at this opset.");
        }

        var symbolic = Enumerable.Range(0, node.Input.Count).Select(i => i < inputs.Count && node.Input[i].Length > 0 ? inputs[i]?.ToSymbolic() : null).ToArray();
        var outputs = schema.Infer(new InferenceContext(node, schema, opset, symbolic));
        return [.. outputs.Select(o => o.IsConcrete
            ? new ConcreteValue(o.Type, o.ConcreteShape)
            : throw new BatchwiseException($"{node.OpType}: the output shape [{string.Join(", ", o.Shape)}] depends on values not known on the host", "This operator's output size is data-dependent."))];
    }

    private static long Count(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
}
