using System.Collections.Frozen;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Analysis;

/// <summary>What kind of work a node does, which decides what bounds it (compute, memory or launch).</summary>
public enum OpCategory
{
    /// <summary>Conv, MatMul, Gemm: multiply-accumulates with an implicit-GEMM view.</summary>
    Gemm,

    /// <summary>Pointwise math (activations, arithmetic).</summary>
    Elementwise,

    /// <summary>BatchNormalization, LayerNormalization, Softmax.</summary>
    Normalization,

    /// <summary>MaxPool, AveragePool, GlobalAveragePool.</summary>
    Pooling,

    /// <summary>ReduceMean and other reductions.</summary>
    Reduction,

    /// <summary>Copies without math: Concat, Split, Slice, Transpose, Gather, Resize, Pad, Expand, Cast.</summary>
    DataMovement,

    /// <summary>No kernel: views (Reshape, Flatten, Squeeze, Unsqueeze, Identity) and shape arithmetic folded before running.</summary>
    Metadata,
}

/// <summary>
/// A convolution or matrix product as a GEMM: C[M, N] += A[M, K] x B[K, N], done <see cref="BatchCount"/> times.
/// Conv (implicit GEMM): M = output channels, N = batch x output H x W, K = input channels / groups x kernel H x kernel W.
/// MatMul and Gemm: M = rows of the left operand (batch x sequence when the right one is a weight), N = columns, K = inner size.
/// </summary>
/// <param name="M">Rows of the output.</param>
/// <param name="N">Columns of the output.</param>
/// <param name="K">The reduction length.</param>
/// <param name="BatchCount">Independent matrix products (batched MatMul such as attention: batch x heads).</param>
/// <param name="Groups">Convolution groups (depthwise: = channels); M and K above already account for them.</param>
public sealed record GemmShape(long M, long N, long K, long BatchCount = 1, long Groups = 1)
{
    /// <summary>Multiply-accumulates: BatchCount x M x N x K.</summary>
    public long Macs => BatchCount * M * N * K;

    /// <inheritdoc/>
    public override string ToString() => (BatchCount > 1 ? $"{BatchCount} x " : string.Empty) + $"M={M} N={N} K={K}" + (Groups > 1 ? $" (groups {Groups})" : string.Empty);
}

/// <summary>The cost of one node at concrete shapes.</summary>
/// <param name="Name">Node name (or op type and index when unnamed).</param>
/// <param name="OpType">ONNX operator.</param>
/// <param name="Category">Kind of work.</param>
/// <param name="Macs">Multiply-accumulates (Conv, MatMul, Gemm; 0 elsewhere).</param>
/// <param name="Flops">Floating-point operations; one MAC counts as 2.</param>
/// <param name="WeightBytes">Bytes of initializers read (only the gathered rows for an embedding Gather).</param>
/// <param name="ActivationBytesRead">Bytes of computed tensors read.</param>
/// <param name="ActivationBytesWritten">Bytes of outputs written.</param>
/// <param name="Gemm">The GEMM view for Conv, MatMul and Gemm.</param>
/// <param name="OutputShape">Shape of the first output.</param>
public sealed record NodeCost(
    string Name,
    string OpType,
    OpCategory Category,
    long Macs,
    long Flops,
    long WeightBytes,
    long ActivationBytesRead,
    long ActivationBytesWritten,
    GemmShape? Gemm,
    IReadOnlyList<long> OutputShape)
{
    /// <summary>Weights plus activations read.</summary>
    public long BytesRead => WeightBytes + ActivationBytesRead;

    /// <summary>All bytes moved to and from memory.</summary>
    public long Bytes => BytesRead + ActivationBytesWritten;

    /// <summary>FLOPs per byte moved (the roofline's x axis); 0 when nothing moves.</summary>
    public double ArithmeticIntensity => Bytes == 0 ? 0 : (double)Flops / Bytes;

    /// <summary>False for views and folded shape arithmetic, which engines run without a kernel.</summary>
    public bool LaunchesKernel => Category != OpCategory.Metadata;
}

/// <summary>The cost of a whole model at concrete shapes.</summary>
/// <param name="ModelName">The model's short name.</param>
/// <param name="DimValues">The symbolic dimensions and the values they were given (batch=8).</param>
/// <param name="Nodes">Every node, in graph order.</param>
/// <param name="ParameterBytes">Bytes of all initializers (the model's weights in memory).</param>
public sealed record ModelCost(string ModelName, IReadOnlyDictionary<string, long> DimValues, IReadOnlyList<NodeCost> Nodes, long ParameterBytes)
{
    /// <summary>Multiply-accumulates of the whole model.</summary>
    public long Macs => Nodes.Sum(n => n.Macs);

    /// <summary>FLOPs of the whole model.</summary>
    public long Flops => Nodes.Sum(n => n.Flops);

    /// <summary>Weight bytes read by all nodes.</summary>
    public long WeightBytes => Nodes.Sum(n => n.WeightBytes);

    /// <summary>Activation bytes read by all nodes.</summary>
    public long ActivationBytesRead => Nodes.Sum(n => n.ActivationBytesRead);

    /// <summary>Activation bytes written by all nodes.</summary>
    public long ActivationBytesWritten => Nodes.Sum(n => n.ActivationBytesWritten);

    /// <summary>All bytes moved, node by node (no fusion or caching assumed).</summary>
    public long Bytes => Nodes.Sum(n => n.Bytes);

    /// <summary>FLOPs per byte over the whole model.</summary>
    public double ArithmeticIntensity => Bytes == 0 ? 0 : (double)Flops / Bytes;

    /// <summary>Nodes that run a kernel (before any fusion an engine does).</summary>
    public int KernelCount => Nodes.Count(n => n.LaunchesKernel);
}

/// <summary>Options for counting costs.</summary>
public sealed record CostOptions
{
    /// <summary>Count every floating-point tensor as this type (e.g. Float16 to ask what FP16 would move); null keeps the stored types.</summary>
    public ElementType? FloatType { get; init; }
}

/// <summary>
/// Counts FLOPs, MACs and bytes per node from inferred shapes, at any batch and input size. FLOPs per element outside
/// GEMMs: 1 for arithmetic, 4 for transcendental functions (exp, erf, tanh, sigmoid, sqrt, pow), 2 for BatchNormalization
/// (folded scale and shift), 8 for LayerNormalization, 5 for Softmax, the window size for pooling.
/// </summary>
public static class CostModel
{
    private static readonly FrozenSet<string> Arithmetic = FrozenSet.ToFrozenSet(
        ["Relu", "LeakyRelu", "Add", "Sub", "Mul", "Div", "Clip", "Neg", "Abs", "Max", "Min", "Where", "HardSigmoid", "Floor", "Ceil", "Mod", "Not", "And", "Or",
         "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Reciprocal"], StringComparer.Ordinal);

    private static readonly FrozenSet<string> Transcendental = FrozenSet.ToFrozenSet(
        ["Sigmoid", "Tanh", "Exp", "Erf", "Sqrt", "Pow", "Log", "HardSwish", "Elu", "Selu", "Gelu", "Softplus", "Sin", "Cos"], StringComparer.Ordinal);

    private static readonly FrozenSet<string> Views = FrozenSet.ToFrozenSet(
        ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "Dropout"], StringComparer.Ordinal);

    private static readonly FrozenSet<string> Copies = FrozenSet.ToFrozenSet(
        ["Concat", "Split", "Slice", "Transpose", "Gather", "Resize", "Pad", "Expand", "Cast"], StringComparer.Ordinal);

    /// <summary>Costs at batch size <paramref name="batchSize"/> (bound to the model's batch symbol) and the given other dimensions.</summary>
    public static ModelCost Compute(OnnxModel model, long batchSize, IReadOnlyDictionary<string, long>? otherDims = null, CostOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var axis = model.FindBatchAxis();
        if (!axis.IsBatchable && batchSize != 1)
        {
            throw new BatchwiseException($"'{model.Name}' has no dynamic batch axis ({axis.Reason}), so it cannot be costed at batch {batchSize}", "Use batch 1, or export the model with a dynamic first dimension.");
        }

        var dims = new Dictionary<string, long>(otherDims ?? new Dictionary<string, long>(), StringComparer.Ordinal);
        if (axis.IsBatchable)
        {
            dims[axis.Symbol!] = batchSize;
        }

        return Compute(model, dims, options);
    }

    /// <summary>Costs with every symbolic dimension given a value (batch=8, seq=128); a dimension left symbolic is an error naming it.</summary>
    public static ModelCost Compute(OnnxModel model, IReadOnlyDictionary<string, long> dimValues, CostOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(dimValues);
        var shapes = ShapeInference.Run(model, dimValues);
        var initializers = model.InitializersByName();
        var floatType = options?.FloatType;
        var nodes = new List<NodeCost>(model.Graph.Node.Count);
        for (var i = 0; i < model.Graph.Node.Count; i++)
        {
            nodes.Add(Cost(model.Graph.Node[i], i, shapes, initializers, floatType));
        }

        long parameterBytes = 0;
        foreach (var t in model.Graph.Initializer)
        {
            var type = (ElementType)t.DataType;
            parameterBytes += type is ElementType.String or ElementType.Undefined ? 0 : t.ElementCount() * SizeOf(type, floatType);
        }

        return new ModelCost(model.Name, dimValues, nodes, parameterBytes);
    }

    private static int SizeOf(ElementType type, ElementType? floatType) =>
        floatType is { } f && type.IsFloatingPoint() ? f.SizeOf() : type.SizeOf();

    private static NodeCost Cost(OnnxProto.NodeProto node, int index, ShapeInferenceResult shapes, IReadOnlyDictionary<string, OnnxProto.TensorProto> initializers, ElementType? floatType)
    {
        var name = string.IsNullOrEmpty(node.Name) ? $"{node.OpType}_{index}" : node.Name;
        long[] Dims(string value)
        {
            var s = shapes[value];
            return s.IsConcrete ? s.ToArray() : throw new BatchwiseException(
                $"Cannot count the cost of {node.OpType} node '{name}': '{value}' has shape {s.DimsText}",
                $"Give a value to {string.Join(", ", s.Dims.Where(d => d.IsDynamic))} (e.g. --shape NAME:DIMS or a batch size).");
        }

        long Bytes(string value) => shapes[value].ElementType is ElementType.String or ElementType.Undefined ? 0 : Count(Dims(value)) * SizeOf(shapes[value].ElementType, floatType);

        var inputs = node.Input.Where(i => i.Length > 0).ToList();
        var outputs = node.Output.Where(o => o.Length > 0).ToList();
        var outShape = outputs.Count > 0 ? Dims(outputs[0]) : [];
        var outElements = Count(outShape);
        var op = node.OpType;

        // Nodes whose results are all known before running (shape arithmetic) cost nothing at run time.
        var folded = outputs.Count > 0 && outputs.All(o => shapes.TryGetConstant(o, out _)) && op != "Constant";
        var category = folded || Views.Contains(op) ? OpCategory.Metadata
            : op is "Conv" or "MatMul" or "Gemm" ? OpCategory.Gemm
            : op is "BatchNormalization" or "LayerNormalization" or "Softmax" or "LogSoftmax" ? OpCategory.Normalization
            : op is "MaxPool" or "AveragePool" or "GlobalAveragePool" or "GlobalMaxPool" ? OpCategory.Pooling
            : op.StartsWith("Reduce", StringComparison.Ordinal) ? OpCategory.Reduction
            : Copies.Contains(op) ? OpCategory.DataMovement
            : OpCategory.Elementwise;

        if (category == OpCategory.Metadata)
        {
            return new NodeCost(name, op, category, 0, 0, 0, 0, 0, null, outShape);
        }

        long weightBytes = 0, activationRead = 0;
        foreach (var input in inputs)
        {
            if (initializers.ContainsKey(input))
            {
                weightBytes += Bytes(input);
            }
            else
            {
                activationRead += Bytes(input);
            }
        }

        // An embedding lookup reads only the rows it gathers, not the whole table.
        if (op == "Gather" && initializers.ContainsKey(inputs[0]))
        {
            weightBytes = Bytes(outputs[0]);
        }

        var written = outputs.Sum(Bytes);
        GemmShape? gemm = null;
        long flops;
        switch (op)
        {
            case "Conv":
                {
                    var w = Dims(inputs[1]);
                    var groups = node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1;
                    gemm = new GemmShape(M: w[0], N: outShape[0] * Count(outShape.Skip(2)), K: Count(w.Skip(1)), Groups: groups);
                    flops = (2 * gemm.Macs) + (inputs.Count > 2 ? outElements : 0);
                    break;
                }

            case "Gemm":
                {
                    var a = Dims(inputs[0]);
                    var transA = node.Attribute.FirstOrDefault(x => x.Name == "transA")?.I == 1;
                    gemm = new GemmShape(M: outShape[0], N: outShape[1], K: transA ? a[0] : a[1]);
                    flops = (2 * gemm.Macs) + (inputs.Count > 2 ? outElements : 0);
                    break;
                }

            case "MatMul":
                {
                    var a = Dims(inputs[0]);
                    var b = Dims(inputs[1]);
                    var k = a[^1];
                    var n = b.Length == 1 ? 1 : b[^1];

                    // With a 2-D right operand (a weight) engines fold every leading dimension into M: one GEMM.
                    gemm = b.Length <= 2
                        ? new GemmShape(M: Count(a) / k, N: n, K: k)
                        : new GemmShape(M: a.Length == 1 ? 1 : a[^2], N: n, K: k, BatchCount: Count(outShape) / ((a.Length == 1 ? 1 : a[^2]) * n));
                    flops = 2 * gemm.Macs;
                    break;
                }

            case "BatchNormalization":
                flops = 2 * outElements;
                break;
            case "LayerNormalization":
                flops = 8 * outElements;
                break;
            case "Softmax" or "LogSoftmax":
                flops = 5 * outElements;
                break;
            case "MaxPool" or "AveragePool":
                {
                    var kernel = node.Attribute.First(a => a.Name == "kernel_shape").Ints;
                    flops = outElements * kernel.Aggregate(1L, (x, y) => x * y);
                    break;
                }

            case "GlobalAveragePool" or "GlobalMaxPool" or "ReduceMean" or "ReduceSum" or "ReduceMax":
                flops = Count(Dims(inputs[0]));
                break;
            default:
                flops = category == OpCategory.DataMovement ? 0
                    : Transcendental.Contains(op) ? 4 * outElements
                    : Arithmetic.Contains(op) ? outElements
                    : outElements;
                break;
        }

        return new NodeCost(name, op, category, gemm?.Macs ?? 0, flops, weightBytes, activationRead, written, gemm, outShape);
    }

    private static long Count(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => checked(a * b));
}
