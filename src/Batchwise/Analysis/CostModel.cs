using Batchwise.Onnx;
using Batchwise.Operators;
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

    /// <summary>Not costed: an operator Batchwise cannot infer or cost, or a node reading its outputs (named in reports, counted as zero).</summary>
    Unknown,
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
/// <param name="Uncosted">Why the node could not be costed (category <see cref="OpCategory.Unknown"/>), or null.</param>
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
    IReadOnlyList<long> OutputShape,
    string? Uncosted = null)
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

    /// <summary>Nodes that could not be costed (unknown operators and what reads their outputs); their cost counts as zero.</summary>
    public IReadOnlyList<NodeCost> Uncosted => [.. Nodes.Where(n => n.Category == OpCategory.Unknown)];
}

/// <summary>Options for counting costs.</summary>
public sealed record CostOptions
{
    /// <summary>Count every floating-point tensor as this type (e.g. Float16 to ask what FP16 would move); null keeps the stored types.</summary>
    public ElementType? FloatType { get; init; }
}

/// <summary>
/// Counts FLOPs, MACs and bytes per node from inferred shapes, at any batch and input size. Each operator's category
/// and FLOPs come from its record in the <see cref="OperatorRegistry"/>; bytes are counted alike for every operator
/// (weights read, activations read and written; an embedding Gather reads only the rows it gathers).
/// </summary>
public static class CostModel
{
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
        var shapes = ShapeInference.Run(model, dimValues, tolerateUnresolved: true);
        var initializers = model.InitializersByName();
        var floatType = options?.FloatType;
        var unresolved = shapes.Unresolved.ToDictionary(u => u.Index);

        // Input dimensions without a value are the caller's to give (an error); any other symbolic dimension is data-dependent.
        var missing = model.Inputs.SelectMany(i => i.Shape.Select((d, k) => d.IsDynamic ? (string.IsNullOrEmpty(d.Symbol) ? $"{i.Name}_dim{k}" : d.Symbol) : null))
            .Where(s => s is not null && !dimValues.ContainsKey(s)).Select(s => s!).ToHashSet(StringComparer.Ordinal);
        var nodes = new List<NodeCost>(model.Graph.Node.Count);
        for (var i = 0; i < model.Graph.Node.Count; i++)
        {
            var node = model.Graph.Node[i];
            var name = string.IsNullOrEmpty(node.Name) ? $"{node.OpType}_{i}" : node.Name;
            if (unresolved.TryGetValue(i, out var u))
            {
                nodes.Add(new NodeCost(name, u.OpType, OpCategory.Unknown, 0, 0, 0, 0, 0, null, [], u.Reason));
                continue;
            }

            try
            {
                nodes.Add(Cost(model, node, i, shapes, initializers, floatType, missing));
            }
            catch (UncostableException e)
            {
                nodes.Add(new NodeCost(name, node.OpType, OpCategory.Unknown, 0, 0, 0, 0, 0, null, [], e.Message));
            }
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

    /// <summary>A node that cannot be costed: its shape depends on values known only when the model runs, or its operator is unknown.</summary>
    private sealed class UncostableException(string message) : Exception(message);

    private static NodeCost Cost(OnnxModel model, OnnxProto.NodeProto node, int index, ShapeInferenceResult shapes, IReadOnlyDictionary<string, OnnxProto.TensorProto> initializers, ElementType? floatType, HashSet<string> missing)
    {
        var name = string.IsNullOrEmpty(node.Name) ? $"{node.OpType}_{index}" : node.Name;
        long[] Dims(string value)
        {
            var s = shapes[value];
            if (s.IsConcrete)
            {
                return s.ToArray();
            }

            var symbolic = s.Dims.Where(d => d.IsDynamic).Select(d => d.ToString()).ToList();
            return symbolic.Any(d => missing.Any(m => d.Contains(m, StringComparison.Ordinal)))
                ? throw new BatchwiseException(
                    $"Cannot count the cost of {node.OpType} node '{name}': '{value}' has shape {s.DimsText}",
                    $"Give a value to {string.Join(", ", s.Dims.Where(d => d.IsDynamic))} (e.g. --shape NAME:DIMS or a batch size).")
                : throw new UncostableException($"'{value}' has shape {s.DimsText}, which depends on values known only when the model runs");
        }

        long Bytes(string value) => shapes[value].ElementType is ElementType.String or ElementType.Undefined ? 0 : Count(Dims(value)) * SizeOf(shapes[value].ElementType, floatType);

        var inputs = node.Input.Where(i => i.Length > 0).ToList();
        var outputs = node.Output.Where(o => o.Length > 0).ToList();
        var outShape = outputs.Count > 0 ? Dims(outputs[0]) : [];
        var op = node.OpType;
        var opset = model.OpsetOf(node.Domain);
        var schema = OperatorRegistry.Find(node.Domain, op, opset)
            ?? throw new UncostableException($"the operator is not in Batchwise's registry at opset {opset}");

        // Nodes whose results are all known before running (shape arithmetic, folded constants) cost nothing at run time.
        var folded = outputs.Count > 0 && outputs.All(shapes.IsKnown) && op != "Constant";
        var category = folded ? OpCategory.Metadata : schema.Category;
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
        var inputShapes = node.Input.Select(i => i.Length > 0 ? Dims(i) : null).ToArray();
        var outputShapes = node.Output.Select(o => o.Length > 0 ? Dims(o) : null).ToArray();
        var work = schema.Cost is { } cost ? cost(new CostContext(node, schema, opset, inputShapes, outputShapes)) : new OperatorWork(Count(outShape));
        return new NodeCost(name, op, category, work.Gemm?.Macs ?? 0, work.Flops, weightBytes, activationRead, written, work.Gemm, outShape);
    }

    private static long Count(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => checked(a * b));
}
