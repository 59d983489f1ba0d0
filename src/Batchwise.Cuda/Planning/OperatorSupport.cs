using System.Collections.Frozen;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The operators the cuda engine executes, checked for every node when a model loads. Attributes, their defaults and
/// the opsets an operator exists in come from the <see cref="OperatorRegistry"/>; which operators the engine lowers, and
/// what of each it refuses, come from the lowering table (<see cref="GraphCompiler.Lowerings"/>); this file says, for
/// every other registry operator, why the engine refuses it.
/// </summary>
internal static class OperatorSupport
{
    /// <summary>Default-domain operators the planner lowers to device steps or folds on the host: the lowering table's keys.</summary>
    public static readonly FrozenSet<string> Lowered = GraphCompiler.Lowerings.Keys.ToFrozenSet(StringComparer.Ordinal);

    /// <summary>Every other default-domain registry operator, with the reason the engine refuses it.</summary>
    public static readonly FrozenDictionary<string, string> Refused = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["Einsum"] = "this form has no CUDA lowering (the engine runs the forms exports use, batched matmuls and permutations, as Transpose/Reshape/MatMul: EinsumDecomposition); run it with --engine ort",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>Throws, naming the node, for the first operator, attribute or element type the engine cannot execute.</summary>
    public static void Validate(OnnxModel model)
    {
        foreach (var node in model.Graph.Node)
        {
            var label = string.IsNullOrEmpty(node.Name) ? $"{node.OpType} node (output '{node.Output.FirstOrDefault()}')" : $"{node.OpType} node '{node.Name}'";
            if (!string.IsNullOrEmpty(node.Domain) && node.Domain != "ai.onnx")
            {
                throw new BatchwiseException($"The cuda engine does not support operator {node.Domain}.{node.OpType} ({label})", "Export the model with standard ONNX operators, or use --engine ort.");
            }

            var schema = OperatorRegistry.Find(node.Domain, node.OpType, model.Opset);
            if (schema is null || !Lowered.Contains(node.OpType))
            {
                var why = Refused.TryGetValue(node.OpType, out var reason) ? $": {reason}"
                    : schema is null && OperatorRegistry.FindAny(node.Domain, node.OpType) is { } other ? $": it does not exist at opset {model.Opset} ({other})"
                    : string.Empty;
                throw new BatchwiseException($"The cuda engine does not support operator {node.OpType} ({label}){why}", $"Use --engine ort for this model; supported operators: {string.Join(", ", Lowered.Order(StringComparer.Ordinal))}.");
            }

            var allowed = schema.AttributesAt(model.Opset).Select(a => a.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var a in node.Attribute)
            {
                if (!allowed.Contains(a.Name))
                {
                    throw new BatchwiseException($"The cuda engine does not support attribute '{a.Name}' of {label}: ONNX defines no such attribute at opset {model.Opset}", "Re-export the model, or use --engine ort.");
                }
            }

            if (GraphCompiler.Lowerings[node.OpType].Check?.Invoke(node, new NodeAttributes(node), model.Opset) is { } unsupported)
            {
                throw new BatchwiseException($"The cuda engine does not support {unsupported} in {label}", "Use --engine ort for this model.");
            }
        }

        foreach (var t in model.Graph.Initializer)
        {
            CheckType((ElementType)t.DataType, $"initializer '{t.Name}'");
        }

        foreach (var v in model.Inputs.Concat(model.Outputs))
        {
            CheckType(v.ElementType, $"graph input/output '{v.Name}'");
        }
    }

    private static readonly HashSet<ElementType> Types =
    [
        ElementType.Float, ElementType.Double, ElementType.Int64, ElementType.Int32, ElementType.Int16, ElementType.Int8,
        ElementType.UInt8, ElementType.UInt16, ElementType.UInt32, ElementType.UInt64, ElementType.Bool, ElementType.Float16,
        ElementType.BFloat16,
    ];

    /// <summary>True for the element types the engine keeps on the device.</summary>
    public static bool Stores(ElementType t) => Types.Contains(t);

    private static void CheckType(ElementType t, string what)
    {
        if (!Types.Contains(t))
        {
            throw new BatchwiseException($"The cuda engine does not support {t.ShortName()} tensors yet ({what})", "Use a float32 or float16 model (--precision fp16 runs a float32 model in half precision), or --engine ort.");
        }
    }
}
