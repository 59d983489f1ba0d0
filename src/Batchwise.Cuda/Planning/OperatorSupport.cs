using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>The operators and attributes the cuda engine executes; checked for every node when a model loads.</summary>
internal static class OperatorSupport
{
    private static readonly Dictionary<string, string[]> Attributes = new(StringComparer.Ordinal)
    {
        ["Conv"] = ["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"],
        ["BatchNormalization"] = ["epsilon", "momentum", "training_mode", "spatial"],
        ["Relu"] = [],
        ["Sigmoid"] = [],
        ["Tanh"] = [],
        ["Sqrt"] = [],
        ["Exp"] = [],
        ["Erf"] = [],
        ["Log"] = [],
        ["Abs"] = [],
        ["Neg"] = [],
        ["Reciprocal"] = [],
        ["Floor"] = [],
        ["Ceil"] = [],
        ["Round"] = [],
        ["Sin"] = [],
        ["Cos"] = [],
        ["Sign"] = [],
        ["Not"] = [],
        ["Softplus"] = [],
        ["Softsign"] = [],
        ["Mish"] = [],
        ["HardSwish"] = [],
        ["LeakyRelu"] = ["alpha"],
        ["HardSigmoid"] = ["alpha", "beta"],
        ["Elu"] = ["alpha"],
        ["Celu"] = ["alpha"],
        ["ThresholdedRelu"] = ["alpha"],
        ["Selu"] = ["alpha", "gamma"],
        ["Gelu"] = ["approximate"],
        ["Add"] = [],
        ["Sub"] = [],
        ["Mul"] = [],
        ["Div"] = [],
        ["Pow"] = [],
        ["PRelu"] = [],
        ["Mod"] = ["fmod"],
        ["Equal"] = [],
        ["Less"] = [],
        ["Greater"] = [],
        ["LessOrEqual"] = [],
        ["GreaterOrEqual"] = [],
        ["And"] = [],
        ["Or"] = [],
        ["Xor"] = [],
        ["Min"] = [],
        ["Max"] = [],
        ["Sum"] = [],
        ["Mean"] = [],
        ["Clip"] = ["min", "max"],
        ["Where"] = [],
        ["Cast"] = ["to", "saturate"],
        ["MaxPool"] = ["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"],
        ["AveragePool"] = ["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"],
        ["GlobalAveragePool"] = [],
        ["GlobalMaxPool"] = [],
        ["Concat"] = ["axis"],
        ["Split"] = ["axis", "split", "num_outputs"],
        ["Slice"] = ["starts", "ends", "axes"],
        ["Resize"] = ["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside", "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"],
        ["Upsample"] = ["mode", "scales"],
        ["Reshape"] = ["allowzero", "shape"],
        ["Flatten"] = ["axis"],
        ["Transpose"] = ["perm"],
        ["Squeeze"] = ["axes"],
        ["Unsqueeze"] = ["axes"],
        ["Gemm"] = ["alpha", "beta", "transA", "transB"],
        ["MatMul"] = [],
        ["Softmax"] = ["axis"],
        ["LogSoftmax"] = ["axis"],
        ["LayerNormalization"] = ["axis", "epsilon", "stash_type"],
        ["ReduceMean"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceSum"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceMax"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceMin"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceProd"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceL2"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceL1"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["ReduceSumSquare"] = ["axes", "keepdims", "noop_with_empty_axes"],
        ["Gather"] = ["axis"],
        ["Shape"] = ["start", "end"],
        ["Size"] = [],
        ["Constant"] = ["value", "value_float", "value_floats", "value_int", "value_ints"],
        ["Identity"] = [],
        ["Dropout"] = ["seed", "ratio"],
        ["Pad"] = ["mode", "pads", "value"],
        ["Expand"] = [],
        ["ConstantOfShape"] = ["value"],
        ["Range"] = [],
    };

    /// <summary>Operators the engine runs.</summary>
    public static IReadOnlyCollection<string> Operators => Attributes.Keys;

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

            if (!Attributes.TryGetValue(node.OpType, out var allowed))
            {
                throw new BatchwiseException($"The cuda engine does not support operator {node.OpType} ({label})", $"Use --engine ort for this model; supported operators: {string.Join(", ", Attributes.Keys.Order(StringComparer.Ordinal))}.");
            }

            foreach (var a in node.Attribute)
            {
                if (!allowed.Contains(a.Name))
                {
                    throw new BatchwiseException($"The cuda engine does not support attribute '{a.Name}' of {label}", "Use --engine ort for this model.");
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

/// <summary>Typed access to a node's attributes with ONNX's defaults.</summary>
internal sealed class NodeAttributes
{
    private readonly Dictionary<string, OnnxProto.AttributeProto> _byName;

    public NodeAttributes(OnnxProto.NodeProto node)
    {
        _byName = node.Attribute.ToDictionary(a => a.Name, StringComparer.Ordinal);
    }

    public bool Has(string name) => _byName.ContainsKey(name);

    public long Int(string name, long fallback) => _byName.TryGetValue(name, out var a) ? a.I : fallback;

    public double Float(string name, double fallback) => _byName.TryGetValue(name, out var a) ? a.F : fallback;

    public string String(string name, string fallback) => _byName.TryGetValue(name, out var a) ? a.S.ToStringUtf8() : fallback;

    public long[]? Ints(string name) => _byName.TryGetValue(name, out var a) ? a.Ints.ToArray() : null;

    public double[]? Floats(string name) => _byName.TryGetValue(name, out var a) ? a.Floats.Select(f => (double)f).ToArray() : null;

    public OnnxProto.AttributeProto? Get(string name) => _byName.GetValueOrDefault(name);
}
