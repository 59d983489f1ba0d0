using System.Collections.Frozen;
using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The operators the cuda engine executes, checked for every node when a model loads. Attributes, their defaults and
/// the opsets an operator exists in come from the <see cref="OperatorRegistry"/>; this file says only which registry
/// operators the engine lowers and, for every other one, why it refuses it.
/// </summary>
internal static class OperatorSupport
{
    /// <summary>Default-domain operators the planner lowers to device steps or folds on the host.</summary>
    public static readonly FrozenSet<string> Lowered = FrozenSet.ToFrozenSet(
    [
        "Conv", "BatchNormalization", "Relu", "Sigmoid", "Tanh", "Sqrt", "Exp", "Erf", "Log", "Abs", "Neg", "Reciprocal", "Floor",
        "Ceil", "Round", "Sin", "Cos", "Sign", "Not", "Softplus", "Softsign", "Mish", "HardSwish", "LeakyRelu", "HardSigmoid", "Elu",
        "Celu", "ThresholdedRelu", "Selu", "Gelu", "Add", "Sub", "Mul", "Div", "Pow", "PRelu", "Mod", "Equal", "Less", "Greater",
        "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Min", "Max", "Sum", "Mean", "Clip", "Where", "Cast", "MaxPool",
        "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat", "Split", "Slice", "Resize", "Upsample", "Reshape", "Flatten",
        "Transpose", "Squeeze", "Unsqueeze", "Gemm", "MatMul", "Softmax", "LogSoftmax", "LayerNormalization", "ReduceMean",
        "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1", "ReduceSumSquare", "Gather", "Shape", "Size",
        "Constant", "Identity", "Dropout", "Pad", "Expand", "ConstantOfShape", "Range",
    ], StringComparer.Ordinal);

    private const string NotYet = "no CUDA lowering yet";

    /// <summary>Every other default-domain registry operator, with the reason the engine refuses it.</summary>
    public static readonly FrozenDictionary<string, string> Refused = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["Tan"] = NotYet,
        ["Asin"] = NotYet,
        ["Acos"] = NotYet,
        ["Atan"] = NotYet,
        ["Sinh"] = NotYet,
        ["Cosh"] = NotYet,
        ["Asinh"] = NotYet,
        ["Acosh"] = NotYet,
        ["Atanh"] = NotYet,
        ["Shrink"] = NotYet,
        ["IsNaN"] = NotYet,
        ["IsInf"] = NotYet,
        ["BitShift"] = NotYet,
        ["BitwiseAnd"] = NotYet,
        ["BitwiseOr"] = NotYet,
        ["BitwiseXor"] = NotYet,
        ["BitwiseNot"] = NotYet,
        ["CastLike"] = NotYet,
        ["ReduceLogSum"] = NotYet,
        ["ReduceLogSumExp"] = NotYet,
        ["GatherElements"] = NotYet,
        ["GatherND"] = NotYet,
        ["ScatterElements"] = NotYet,
        ["ScatterND"] = NotYet,
        ["Tile"] = NotYet,
        ["DepthToSpace"] = NotYet,
        ["SpaceToDepth"] = NotYet,
        ["OneHot"] = NotYet,
        ["Trilu"] = NotYet,
        ["NonZero"] = "its output size depends on the values (a host synchronisation the planner does not do yet)",
        ["CumSum"] = NotYet,
        ["TopK"] = NotYet,
        ["ArgMax"] = NotYet,
        ["ArgMin"] = NotYet,
        ["QuantizeLinear"] = NotYet,
        ["DequantizeLinear"] = NotYet,
        ["DynamicQuantizeLinear"] = NotYet,
        ["ConvInteger"] = NotYet,
        ["MatMulInteger"] = NotYet,
        ["QLinearConv"] = NotYet,
        ["QLinearMatMul"] = NotYet,
        ["ConvTranspose"] = NotYet,
        ["InstanceNormalization"] = NotYet,
        ["GroupNormalization"] = NotYet,
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

            CheckValues(node, label);
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
    ];

    private static void CheckType(ElementType t, string what)
    {
        if (!Types.Contains(t))
        {
            throw new BatchwiseException($"The cuda engine does not support {t.ShortName()} tensors yet ({what})", "Use a float32 or float16 model (--precision fp16 runs a float32 model in half precision), or --engine ort.");
        }
    }

    private static void CheckValues(OnnxProto.NodeProto node, string label)
    {
        var attrs = new NodeAttributes(node);
        void Reject(string what) => throw new BatchwiseException($"The cuda engine does not support {what} in {label}", "Use --engine ort for this model.");
        switch (node.OpType)
        {
            case "BatchNormalization" when attrs.Int("training_mode", 0) != 0 || node.Output.Count(o => o.Length > 0) > 1:
                Reject("training mode (running mean/variance outputs)");
                break;
            case "MaxPool" when node.Output.Count > 1 && node.Output[1].Length > 0:
                Reject("the Indices output");
                break;
            case "Dropout" when node.Output.Count > 1 && node.Output[1].Length > 0:
                Reject("the mask output");
                break;
            case "Resize" or "Upsample":
                var mode = attrs.String("mode", "nearest");
                if (mode is not ("nearest" or "linear" or "bilinear"))
                {
                    Reject($"mode '{mode}' (nearest and linear are supported)");
                }

                var ct = attrs.String("coordinate_transformation_mode", "half_pixel");
                if (ct is "tf_crop_and_resize")
                {
                    Reject("coordinate_transformation_mode 'tf_crop_and_resize'");
                }

                if (attrs.Int("antialias", 0) != 0)
                {
                    Reject("antialias");
                }

                if (attrs.String("keep_aspect_ratio_policy", "stretch") != "stretch")
                {
                    Reject("keep_aspect_ratio_policy other than stretch");
                }

                break;
            case "Pad":
                var pm = attrs.String("mode", "constant");
                if (pm is not ("constant" or "edge" or "reflect" or "wrap"))
                {
                    Reject($"pad mode '{pm}'");
                }

                break;
            case "Conv" or "MaxPool" or "AveragePool":
                var ap = attrs.String("auto_pad", "NOTSET");
                if (ap is not ("NOTSET" or "SAME_UPPER" or "SAME_LOWER" or "VALID"))
                {
                    Reject($"auto_pad '{ap}'");
                }

                break;
            case "Cast" when !Types.Contains((ElementType)attrs.Int("to", 1)):
                Reject($"casting to {((ElementType)attrs.Int("to", 1)).ShortName()}");
                break;
            case "Constant" when attrs.Has("sparse_value") || attrs.Has("value_string") || attrs.Has("value_strings"):
                Reject("a sparse or string value");
                break;
            case "Constant" when attrs.Get("value") is { } value && !Types.Contains((ElementType)value.T.DataType):
                Reject($"a {((ElementType)value.T.DataType).ShortName()} value");
                break;
            case "Gelu" when attrs.String("approximate", "none") is not ("none" or "tanh"):
                Reject("approximate other than none or tanh");
                break;
        }

        _ = ElementwiseOps.Handles(node.OpType);
    }
}
