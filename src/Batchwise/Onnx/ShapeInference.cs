using System.Collections.Frozen;
using OnnxProto = Onnx;

namespace Batchwise.Onnx;

/// <summary>The inferred type and shape of every value of a graph (inputs, initializers, node outputs).</summary>
public sealed class ShapeInferenceResult
{
    private readonly Dictionary<string, TensorShape> _shapes;
    private readonly Dictionary<string, long[]> _constants;

    internal ShapeInferenceResult(Dictionary<string, TensorShape> shapes, Dictionary<string, long[]> constants)
    {
        _shapes = shapes;
        _constants = constants;
    }

    /// <summary>Every value's shape, by value name.</summary>
    public IReadOnlyDictionary<string, TensorShape> Values => _shapes;

    /// <summary>The shape of one value; throws naming it when the graph has no such value.</summary>
    public TensorShape this[string name] => _shapes.TryGetValue(name, out var s)
        ? s
        : throw new BatchwiseException($"The graph has no value named '{name}'", "Check the name against the model's inputs, outputs and node outputs.");

    /// <summary>The values of an integer tensor known before running (shape arithmetic: Shape, Gather, Concat...), when every element is a number.</summary>
    public bool TryGetConstant(string name, out long[] values) => _constants.TryGetValue(name, out values!);
}

/// <summary>
/// Infers the element type and shape of every value in a graph from its input shapes, with symbolic dimensions
/// (batch, seq) carried through as products (2*batch), and int64 shape arithmetic evaluated on the way so that
/// Reshape, Expand and Resize targets resolve.
/// </summary>
public static class ShapeInference
{
    // Keep constant folding of int tensors to shape-sized values; weights are never decoded.
    private const int MaxConstantElements = 4096;

    private static readonly FrozenSet<string> Unary = FrozenSet.ToFrozenSet(
    [
        "Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Exp", "Erf", "Sqrt", "Identity", "Softmax",
        "LogSoftmax", "Neg", "Abs", "Log", "Reciprocal", "Floor", "Ceil", "Elu", "Selu", "Gelu", "Softplus", "Not", "Sin", "Cos",
    ], StringComparer.Ordinal);

    private static readonly FrozenSet<string> Binary = FrozenSet.ToFrozenSet(["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "And", "Or"], StringComparer.Ordinal);

    private static readonly FrozenSet<string> Comparisons = FrozenSet.ToFrozenSet(["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"], StringComparer.Ordinal);

    /// <summary>The operators shape inference understands.</summary>
    public static IReadOnlyCollection<string> SupportedOperators { get; } =
    [
        .. Unary, .. Binary, .. Comparisons,
        "Conv", "BatchNormalization", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Gemm", "MatMul",
        "Concat", "Split", "Slice", "Resize", "Reshape", "Transpose", "LayerNormalization", "Gather", "Cast", "Unsqueeze", "Squeeze",
        "ReduceMean", "ReduceSum", "ReduceMax", "Shape", "Constant", "Expand", "Where", "Pad", "Dropout",
    ];

    /// <summary>
    /// Infers every value's shape. Symbolic input dimensions named in <paramref name="dimValues"/> (e.g. batch=8)
    /// become numbers; the others stay symbols.
    /// </summary>
    public static ShapeInferenceResult Run(OnnxModel model, IReadOnlyDictionary<string, long>? dimValues = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var state = new State(model, dimValues ?? new Dictionary<string, long>());
        foreach (var node in model.Graph.Node)
        {
            state.Infer(node);
        }

        var shapes = new Dictionary<string, TensorShape>(StringComparer.Ordinal);
        var constants = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var (name, v) in state.Values)
        {
            shapes[name] = new TensorShape(v.Type, [.. v.Shape.Select(d => d.ToDim())]);
            if (v.Data is { } data && data.All(d => d.IsConcrete))
            {
                constants[name] = [.. data.Select(d => d.Value)];
            }
        }

        return new ShapeInferenceResult(shapes, constants);
    }

    /// <summary>One value during inference: type, shape and, for small integer tensors, the elements.</summary>
    private sealed record Info(ElementType Type, DimExpr[] Shape, DimExpr[]? Data = null);

    private sealed class State
    {
        private readonly OnnxModel _model;
        private readonly IReadOnlyDictionary<string, OnnxProto.TensorProto> _initializers;
        private readonly Dictionary<string, float[]> _floatConstants = new(StringComparer.Ordinal);
        private OnnxProto.NodeProto _node = null!;

        public State(OnnxModel model, IReadOnlyDictionary<string, long> dimValues)
        {
            _model = model;
            _initializers = model.InitializersByName();
            foreach (var t in model.Graph.Initializer)
            {
                var type = (ElementType)t.DataType;
                DimExpr[]? data = IsInteger(type) && t.ElementCount() <= MaxConstantElements ? [.. t.ToInt64s().Select(DimExpr.Of)] : null;
                Values[t.Name] = new Info(type, [.. t.Dims.Select(DimExpr.Of)], data);
            }

            foreach (var input in model.Graph.Input)
            {
                if (_initializers.ContainsKey(input.Name))
                {
                    continue;
                }

                var spec = OnnxModel.ToSpec(input);
                Values[input.Name] = new Info(spec.ElementType, [.. spec.Shape.Select((d, i) => DimExpr.FromDim(d, dimValues, $"{input.Name}_dim{i}"))]);
            }
        }

        public Dictionary<string, Info> Values { get; } = new(StringComparer.Ordinal);

        private string Where => string.IsNullOrEmpty(_node.Name) ? _node.OpType : $"{_node.OpType} node '{_node.Name}'";

        public void Infer(OnnxProto.NodeProto node)
        {
            _node = node;
            if (!string.IsNullOrEmpty(node.Domain) && node.Domain != "ai.onnx")
            {
                throw new BatchwiseException($"Shape inference does not support {node.Domain}.{node.OpType} ({Where}): operators outside the default ONNX domain", "Export the model with standard ONNX operators only.");
            }

            var outputs = InferNode(node);
            for (var i = 0; i < node.Output.Count && i < outputs.Length; i++)
            {
                if (!string.IsNullOrEmpty(node.Output[i]))
                {
                    Values[node.Output[i]] = outputs[i];
                }
            }
        }

        private Info[] InferNode(OnnxProto.NodeProto node)
        {
            var op = node.OpType;
            if (Unary.Contains(op))
            {
                var x = In(0);
                var data = op == "Identity" ? x.Data : null;
                return [x with { Data = data }];
            }

            if (Binary.Contains(op))
            {
                return [BinaryOp(op, In(0), In(1))];
            }

            if (Comparisons.Contains(op))
            {
                return [new Info(ElementType.Bool, Broadcast(In(0).Shape, In(1).Shape))];
            }

            return op switch
            {
                "Clip" or "Dropout" => [In(0) with { Data = null }, new Info(ElementType.Bool, In(0).Shape)],
                "BatchNormalization" => [In(0), In(1), In(1)],
                "LayerNormalization" => LayerNorm(),
                "Conv" => [Conv()],
                "MaxPool" or "AveragePool" => Pool(),
                "GlobalAveragePool" or "GlobalMaxPool" => [In(0) with { Shape = [.. In(0).Shape.Take(2), .. In(0).Shape.Skip(2).Select(_ => DimExpr.Of(1))] }],
                "Flatten" => [Flatten()],
                "Gemm" => [Gemm()],
                "MatMul" => [MatMul()],
                "Concat" => [Concat()],
                "Split" => Split(),
                "Slice" => [Slice()],
                "Resize" => [Resize()],
                "Reshape" => [Reshape()],
                "Transpose" => [Transpose()],
                "Gather" => [Gather()],
                "Cast" => [Cast()],
                "Unsqueeze" => [Unsqueeze()],
                "Squeeze" => [Squeeze()],
                "ReduceMean" or "ReduceSum" or "ReduceMax" => [Reduce()],
                "Shape" => [ShapeOf()],
                "Constant" => [ConstantNode()],
                "Expand" => [Expand()],
                "Where" => [new Info(In(1).Type, Broadcast(Broadcast(In(0).Shape, In(1).Shape), In(2).Shape))],
                "Pad" => [Pad()],
                _ => throw new BatchwiseException(
                    $"Shape inference does not support the operator {op} ({Where})",
                    $"Batchwise infers shapes for: {string.Join(", ", SupportedOperators.Order(StringComparer.Ordinal))}."),
            };
        }

        // ---- inputs, attributes and constants ----

        private Info In(int i)
        {
            if (i >= _node.Input.Count || string.IsNullOrEmpty(_node.Input[i]))
            {
                throw Fail($"input {i} is missing");
            }

            return Values.TryGetValue(_node.Input[i], out var v) ? v : throw Fail($"input '{_node.Input[i]}' has no inferred shape (is the graph topologically sorted?)");
        }

        private bool Has(int i) => i < _node.Input.Count && !string.IsNullOrEmpty(_node.Input[i]);

        private BatchwiseException Fail(string what) =>
            new($"Shape inference failed at {Where}: {what}", "Check the model with onnx.checker.check_model(model, full_check=True).");

        private OnnxProto.AttributeProto? Attr(string name) => _node.Attribute.FirstOrDefault(a => a.Name == name);

        private long AttrInt(string name, long fallback) => Attr(name) is { } a ? a.I : fallback;

        private float AttrFloat(string name, float fallback) => Attr(name) is { } a ? a.F : fallback;

        private long[]? AttrInts(string name) => Attr(name) is { } a ? [.. a.Ints] : null;

        private string AttrString(string name, string fallback) => Attr(name) is { } a ? a.S.ToStringUtf8() : fallback;

        /// <summary>The numbers of a constant integer input, or null when they are not known before running.</summary>
        private long[]? ConstInts(int i)
        {
            if (!Has(i))
            {
                return null;
            }

            var data = In(i).Data;
            return data is not null && data.All(d => d.IsConcrete) ? [.. data.Select(d => d.Value)] : null;
        }

        private long[] RequireInts(int i, string what) => ConstInts(i) ?? throw new BatchwiseException(
            $"Shape inference cannot resolve {what} of {Where}: input '{_node.Input[i]}' is computed at run time from values, not from shapes",
            "Export the model with constant shapes, or simplify it with onnxsim.");

        private float[]? ConstFloats(int i)
        {
            if (!Has(i))
            {
                return null;
            }

            var name = _node.Input[i];
            if (_floatConstants.TryGetValue(name, out var f))
            {
                return f;
            }

            if (_initializers.TryGetValue(name, out var t) && ((ElementType)t.DataType).IsFloatingPoint() && t.ElementCount() <= MaxConstantElements)
            {
                return _floatConstants[name] = t.ToFloats();
            }

            return In(i).Data is { } d && d.All(x => x.IsConcrete) ? [.. d.Select(x => (float)x.Value)] : null;
        }

        private static bool IsInteger(ElementType t) => t is ElementType.Int64 or ElementType.Int32 or ElementType.Int16 or ElementType.Int8 or ElementType.UInt8 or ElementType.UInt16 or ElementType.UInt32 or ElementType.UInt64 or ElementType.Bool;

        private int Axis(long axis, int rank) => axis < -rank || axis >= Math.Max(rank, 1)
            ? throw Fail($"axis {axis} is out of range for rank {rank}")
            : (int)(axis < 0 ? axis + rank : axis);

        private static DimExpr Product(IEnumerable<DimExpr> dims) => dims.Aggregate(DimExpr.Of(1), (a, b) => a * b);

        private static long Count(DimExpr[] shape) => shape.All(d => d.IsConcrete) ? shape.Aggregate(1L, (a, d) => a * d.Value) : long.MaxValue;

        // ---- broadcasting and elementwise ----

        private DimExpr[] Broadcast(DimExpr[] a, DimExpr[] b)
        {
            var rank = Math.Max(a.Length, b.Length);
            var result = new DimExpr[rank];
            for (var i = 0; i < rank; i++)
            {
                var da = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : DimExpr.Of(1);
                var db = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : DimExpr.Of(1);
                result[i] =
                    da == db ? da
                    : da.IsConcrete && da.Value == 1 ? db
                    : db.IsConcrete && db.Value == 1 ? da
                    : da.IsConcrete && db.IsConcrete ? throw Fail($"shapes [{string.Join(", ", a)}] and [{string.Join(", ", b)}] do not broadcast")
                    : da.IsConcrete ? da
                    : db;
            }

            return result;
        }

        private Info BinaryOp(string op, Info a, Info b)
        {
            var shape = Broadcast(a.Shape, b.Shape);
            DimExpr[]? data = null;
            if (a.Data is not null && b.Data is not null && Count(shape) <= MaxConstantElements && (a.Data.Length == 1 || b.Data.Length == 1 || a.Data.Length == b.Data.Length))
            {
                var n = Math.Max(a.Data.Length, b.Data.Length);
                data = new DimExpr[n];
                for (var i = 0; i < n; i++)
                {
                    var x = a.Data[a.Data.Length == 1 ? 0 : i];
                    var y = b.Data[b.Data.Length == 1 ? 0 : i];
                    DimExpr? r = op switch
                    {
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Mul" => x * y,
                        "Div" => x.FloorDivide(y),
                        _ => null,
                    };
                    if (r is null)
                    {
                        data = null;
                        break;
                    }

                    data[i] = r.Value;
                }
            }

            return new Info(a.Type, shape, data);
        }

        private Info[] LayerNorm()
        {
            var x = In(0);
            var axis = Axis(AttrInt("axis", -1), x.Shape.Length);
            var stats = x.Shape.Select((d, i) => i < axis ? d : DimExpr.Of(1)).ToArray();
            var statsType = (ElementType)AttrInt("stash_type", (long)ElementType.Float);
            return [x with { Data = null }, new Info(statsType, stats), new Info(statsType, stats)];
        }

        // ---- convolution and pooling ----

        private Info Conv()
        {
            var x = In(0);
            var w = In(1);
            if (x.Shape.Length < 3 || w.Shape.Length != x.Shape.Length)
            {
                throw Fail($"input rank {x.Shape.Length} and weight rank {w.Shape.Length} do not make a convolution");
            }

            var group = AttrInt("group", 1);
            if (x.Shape[1].IsConcrete && w.Shape[1].IsConcrete && x.Shape[1].Value != w.Shape[1].Value * group)
            {
                throw Fail($"input has {x.Shape[1]} channels but the weight expects {w.Shape[1].Value * group} ({w.Shape[1]} x group {group})");
            }

            var kernel = AttrInts("kernel_shape") ?? [.. w.Shape.Skip(2).Select(d => d.IsConcrete ? d.Value : throw Fail("the kernel size is symbolic"))];
            var spatial = Spatial(x.Shape, kernel, ceil: false);
            return new Info(x.Type, [x.Shape[0], w.Shape[0], .. spatial]);
        }

        private Info[] Pool()
        {
            var x = In(0);
            var kernel = AttrInts("kernel_shape") ?? throw Fail("kernel_shape is missing");
            var spatial = Spatial(x.Shape, kernel, ceil: AttrInt("ceil_mode", 0) != 0);
            var shape = new[] { x.Shape[0], x.Shape[1] }.Concat(spatial).ToArray();
            return [new Info(x.Type, shape), new Info(ElementType.Int64, shape)];
        }

        private DimExpr[] Spatial(DimExpr[] input, long[] kernel, bool ceil)
        {
            var n = input.Length - 2;
            if (kernel.Length != n)
            {
                throw Fail($"kernel_shape has {kernel.Length} dimensions for {n} spatial dimensions");
            }

            var strides = AttrInts("strides") ?? [.. Enumerable.Repeat(1L, n)];
            var dilations = AttrInts("dilations") ?? [.. Enumerable.Repeat(1L, n)];
            var pads = AttrInts("pads") ?? new long[2 * n];
            var autoPad = AttrString("auto_pad", "NOTSET");
            var result = new DimExpr[n];
            for (var i = 0; i < n; i++)
            {
                var d = input[i + 2];
                var dk = (dilations[i] * (kernel[i] - 1)) + 1;
                if (!d.IsConcrete)
                {
                    result[i] = strides[i] == 1 && (autoPad.StartsWith("SAME", StringComparison.Ordinal) || pads[i] + pads[i + n] == dk - 1)
                        ? d
                        : DimExpr.Symbol($"({_node.OpType.ToLowerInvariant()}({d}))");
                    continue;
                }

                long size = d.Value, s = strides[i];
                long outSize;
                switch (autoPad)
                {
                    case "SAME_UPPER" or "SAME_LOWER":
                        outSize = (size + s - 1) / s;
                        break;
                    case "VALID":
                        outSize = ((size - dk) / s) + 1;
                        break;
                    default:
                        var span = size + pads[i] + pads[i + n] - dk;
                        outSize = ceil ? ((span + s - 1) / s) + 1 : (span / s) + 1;

                        // With ceil_mode the last window must start inside the input or its left padding.
                        if (ceil && (outSize - 1) * s >= size + pads[i])
                        {
                            outSize--;
                        }

                        break;
                }

                if (outSize < 1)
                {
                    throw Fail($"spatial dimension {i} of size {size} is smaller than the kernel ({kernel[i]}); the input is too small");
                }

                result[i] = DimExpr.Of(outSize);
            }

            return result;
        }

        // ---- linear algebra ----

        private Info Gemm()
        {
            var a = In(0);
            var b = In(1);
            if (a.Shape.Length != 2 || b.Shape.Length != 2)
            {
                throw Fail($"Gemm takes 2-D inputs, got ranks {a.Shape.Length} and {b.Shape.Length}");
            }

            var (m, ka) = AttrInt("transA", 0) != 0 ? (a.Shape[1], a.Shape[0]) : (a.Shape[0], a.Shape[1]);
            var (kb, n) = AttrInt("transB", 0) != 0 ? (b.Shape[1], b.Shape[0]) : (b.Shape[0], b.Shape[1]);
            if (ka.IsConcrete && kb.IsConcrete && ka != kb)
            {
                throw Fail($"inner dimensions differ: A gives K={ka}, B gives K={kb}");
            }

            return new Info(a.Type, [m, n]);
        }

        private Info MatMul()
        {
            var a = In(0).Shape;
            var b = In(1).Shape;
            if (a.Length == 0 || b.Length == 0)
            {
                throw Fail("MatMul does not take scalars");
            }

            var a2 = a.Length == 1 ? [DimExpr.Of(1), a[0]] : a;
            var b2 = b.Length == 1 ? [b[0], DimExpr.Of(1)] : b;
            if (a2[^1].IsConcrete && b2[^2].IsConcrete && a2[^1] != b2[^2])
            {
                throw Fail($"inner dimensions differ: [{string.Join(", ", a)}] x [{string.Join(", ", b)}]");
            }

            var batch = Broadcast(a2[..^2], b2[..^2]);
            var shape = new List<DimExpr>(batch);
            if (a.Length > 1)
            {
                shape.Add(a2[^2]);
            }

            if (b.Length > 1)
            {
                shape.Add(b2[^1]);
            }

            return new Info(In(0).Type, [.. shape]);
        }

        // ---- data movement ----

        private Info Flatten()
        {
            var x = In(0);
            var rank = x.Shape.Length;
            var a = AttrInt("axis", 1);
            var axis = a < -rank || a > rank ? throw Fail($"axis {a} is out of range for rank {rank}") : (int)(a < 0 ? a + rank : a);
            return new Info(x.Type, [Product(x.Shape.Take(axis)), Product(x.Shape.Skip(axis))], x.Data);
        }

        private Info Concat()
        {
            var first = In(0);
            var axis = Axis(AttrInt("axis", 0), first.Shape.Length);
            var shape = (DimExpr[])first.Shape.Clone();
            var parts = Enumerable.Range(0, _node.Input.Count).Where(Has).Select(In).ToList();
            foreach (var p in parts.Skip(1))
            {
                if (p.Shape.Length != shape.Length)
                {
                    throw Fail($"inputs have ranks {shape.Length} and {p.Shape.Length}");
                }

                shape[axis] += p.Shape[axis];
            }

            DimExpr[]? data = parts.All(p => p.Data is not null) && shape.Length <= 1 ? [.. parts.SelectMany(p => p.Data!)] : null;
            return new Info(first.Type, shape, data);
        }

        private Info[] Split()
        {
            var x = In(0);
            var axis = Axis(AttrInt("axis", 0), x.Shape.Length);
            var count = _node.Output.Count;
            var sizes = (_model.Opset >= 13 ? ConstInts(1) : AttrInts("split")) ?? AttrInts("split");
            var result = new Info[count];
            if (sizes is not null)
            {
                if (sizes.Length != count)
                {
                    throw Fail($"split has {sizes.Length} sizes for {count} outputs");
                }

                if (x.Shape[axis].IsConcrete && sizes.Sum() != x.Shape[axis].Value)
                {
                    throw Fail($"split sizes add up to {sizes.Sum()}, not {x.Shape[axis]}");
                }
            }

            for (var i = 0; i < count; i++)
            {
                var shape = (DimExpr[])x.Shape.Clone();
                if (sizes is not null)
                {
                    shape[axis] = DimExpr.Of(sizes[i]);
                }
                else if (x.Shape[axis].IsConcrete)
                {
                    // Equal parts; with num_outputs (opset 18) the last part may be smaller.
                    var size = x.Shape[axis].Value;
                    var part = (size + count - 1) / count;
                    shape[axis] = DimExpr.Of(i < count - 1 ? part : size - (part * (count - 1)));
                }
                else
                {
                    shape[axis] = x.Shape[axis].DivideBy(DimExpr.Of(count));
                }

                result[i] = new Info(x.Type, shape);
            }

            return result;
        }

        private Info Slice()
        {
            var x = In(0);
            long[] starts, ends;
            long[]? axes, steps;
            if (_model.Opset < 10)
            {
                starts = AttrInts("starts") ?? throw Fail("starts is missing");
                ends = AttrInts("ends") ?? throw Fail("ends is missing");
                axes = AttrInts("axes");
                steps = null;
            }
            else
            {
                starts = RequireInts(1, "the starts");
                ends = RequireInts(2, "the ends");
                axes = Has(3) ? RequireInts(3, "the axes") : null;
                steps = Has(4) ? RequireInts(4, "the steps") : null;
            }

            var shape = (DimExpr[])x.Shape.Clone();
            var ranges = new (long Start, long Step, long Count)?[shape.Length];
            for (var i = 0; i < starts.Length; i++)
            {
                var axis = Axis(axes?[i] ?? i, shape.Length);
                var step = steps?[i] ?? 1;
                if (step == 0)
                {
                    throw Fail("a step is 0");
                }

                var d = shape[axis];
                if (!d.IsConcrete)
                {
                    // Symbolic dimension: exact for the common cases [0:], [k:], [-k:] and [a:b] with small positive bounds.
                    var endsAtEnd = ends[i] >= int.MaxValue;
                    shape[axis] = step != 1 ? DimExpr.Symbol($"(slice({d}))")
                        : starts[i] >= 0 && endsAtEnd ? d - DimExpr.Of(starts[i])
                        : starts[i] < 0 && endsAtEnd ? DimExpr.Of(-starts[i])
                        : starts[i] >= 0 && ends[i] >= 0 ? DimExpr.Of(Math.Max(0, ends[i] - starts[i]))
                        : DimExpr.Symbol($"(slice({d}))");
                    continue;
                }

                var size = d.Value;
                long start = starts[i], end = ends[i];
                start = start < 0 ? start + size : start;
                end = end < 0 ? end + size : end;
                long count;
                if (step > 0)
                {
                    start = Math.Clamp(start, 0, size);
                    end = Math.Clamp(end, 0, size);
                    count = end > start ? (end - start + step - 1) / step : 0;
                }
                else
                {
                    start = Math.Clamp(start, -1, size - 1);
                    end = Math.Clamp(end, -1, size - 1);
                    count = start > end ? (start - end - step - 1) / -step : 0;
                }

                shape[axis] = DimExpr.Of(count);
                ranges[axis] = (start, step, count);
            }

            DimExpr[]? data = null;
            if (x.Data is not null && shape.Length == 1 && ranges[0] is { } r)
            {
                data = [.. Enumerable.Range(0, (int)r.Count).Select(k => x.Data[(int)(r.Start + (k * r.Step))])];
            }
            else if (x.Data is not null && shape.Length == 1)
            {
                data = x.Data;
            }

            return new Info(x.Type, shape, data);
        }

        private Info Resize()
        {
            var x = In(0);
            var rank = x.Shape.Length;
            var (scalesIndex, sizesIndex) = _model.Opset < 11 ? (1, -1) : (2, 3);
            if (sizesIndex > 0 && Has(sizesIndex))
            {
                var sizes = In(sizesIndex).Data ?? throw Fail("the sizes input is computed at run time; Batchwise needs it known from shapes");
                var axes = AttrInts("axes");
                var shape = (DimExpr[])x.Shape.Clone();
                for (var i = 0; i < sizes.Length; i++)
                {
                    shape[axes is null ? i : Axis(axes[i], rank)] = sizes[i];
                }

                return new Info(x.Type, shape);
            }

            var scales = ConstFloats(scalesIndex) ?? throw Fail("neither constant scales nor sizes are given");
            if (scales.Length != rank)
            {
                throw Fail($"{scales.Length} scales for a rank-{rank} input");
            }

            var result = new DimExpr[rank];
            for (var i = 0; i < rank; i++)
            {
                var d = x.Shape[i];
                result[i] = scales[i] == 1f ? d
                    : d.IsConcrete ? DimExpr.Of((long)Math.Floor(d.Value * (double)scales[i]))
                    : scales[i] == MathF.Round(scales[i]) ? d * DimExpr.Of((long)scales[i])
                    : DimExpr.Symbol($"({d}*{scales[i]})");
            }

            return new Info(x.Type, result);
        }

        private Info Reshape()
        {
            var x = In(0);
            var target = In(1).Data ?? throw Fail("the target shape is computed at run time from values; Batchwise needs it known from shapes");
            var allowZero = AttrInt("allowzero", 0) != 0;
            var shape = new DimExpr[target.Length];
            var inferred = -1;
            for (var i = 0; i < target.Length; i++)
            {
                var t = target[i];
                if (t.IsConcrete && t.Value == 0 && !allowZero)
                {
                    shape[i] = i < x.Shape.Length ? x.Shape[i] : throw Fail($"target dimension {i} is 0 (copy) but the input has rank {x.Shape.Length}");
                }
                else if (t.IsConcrete && t.Value == -1)
                {
                    if (inferred >= 0)
                    {
                        throw Fail("the target shape has more than one -1");
                    }

                    inferred = i;
                }
                else
                {
                    shape[i] = t;
                }
            }

            var total = Product(x.Shape);
            if (inferred >= 0)
            {
                shape[inferred] = total.DivideBy(Product(shape.Where((_, i) => i != inferred)));
            }
            else if (total.IsConcrete && Product(shape) is { IsConcrete: true } p && p.Value != total.Value)
            {
                throw Fail($"cannot reshape {total.Value} elements [{string.Join(", ", x.Shape)}] to [{string.Join(", ", shape)}]");
            }

            if (shape.Any(d => d.IsConcrete && d.Value < 0))
            {
                throw Fail($"cannot reshape [{string.Join(", ", x.Shape)}] to [{string.Join(", ", target)}]");
            }

            return new Info(x.Type, shape, x.Data);
        }

        private Info Transpose()
        {
            var x = In(0);
            var perm = AttrInts("perm") ?? [.. Enumerable.Range(0, x.Shape.Length).Reverse().Select(i => (long)i)];
            if (perm.Length != x.Shape.Length)
            {
                throw Fail($"perm has {perm.Length} entries for a rank-{x.Shape.Length} input");
            }

            return new Info(x.Type, [.. perm.Select(p => x.Shape[Axis(p, x.Shape.Length)])]);
        }

        private Info Gather()
        {
            var data = In(0);
            var indices = In(1);
            var axis = Axis(AttrInt("axis", 0), data.Shape.Length);
            DimExpr[] shape = [.. data.Shape.Take(axis), .. indices.Shape, .. data.Shape.Skip(axis + 1)];
            DimExpr[]? values = null;
            if (data.Data is not null && data.Shape.Length == 1 && indices.Data is { } idx && idx.All(i => i.IsConcrete))
            {
                var n = data.Data.Length;
                values = [.. idx.Select(i => i.Value < 0 ? i.Value + n : i.Value).Select(i => i >= 0 && i < n ? data.Data[i] : throw Fail($"index {i} is out of range for {n} elements"))];
            }

            return new Info(data.Type, shape, values);
        }

        private Info Cast()
        {
            var x = In(0);
            var to = (ElementType)AttrInt("to", 0);
            return new Info(to, x.Shape, IsInteger(to) ? x.Data : null);
        }

        private long[] AxesFromInputOrAttribute(int opsetWithInput)
        {
            if (_model.Opset >= opsetWithInput)
            {
                return Has(1) ? RequireInts(1, "the axes") : [];
            }

            return AttrInts("axes") ?? [];
        }

        private Info Unsqueeze()
        {
            var x = In(0);
            var axes = AxesFromInputOrAttribute(13);
            var rank = x.Shape.Length + axes.Length;
            var normalised = axes.Select(a => Axis(a, rank)).ToHashSet();
            var shape = new DimExpr[rank];
            var next = 0;
            for (var i = 0; i < rank; i++)
            {
                shape[i] = normalised.Contains(i) ? DimExpr.Of(1) : x.Shape[next++];
            }

            return new Info(x.Type, shape, x.Data);
        }

        private Info Squeeze()
        {
            var x = In(0);
            var axes = AxesFromInputOrAttribute(13).Select(a => Axis(a, x.Shape.Length)).ToHashSet();
            foreach (var a in axes)
            {
                if (x.Shape[a].IsConcrete && x.Shape[a].Value != 1)
                {
                    throw Fail($"axis {a} has size {x.Shape[a]}, not 1");
                }
            }

            var shape = x.Shape.Where((d, i) => axes.Count > 0 ? !axes.Contains(i) : !(d.IsConcrete && d.Value == 1)).ToArray();
            return new Info(x.Type, shape, x.Data);
        }

        private Info Reduce()
        {
            var x = In(0);
            var axesFromInput = _node.OpType == "ReduceSum" ? 13 : 18;
            var axes = AxesFromInputOrAttribute(axesFromInput).Select(a => Axis(a, x.Shape.Length)).ToHashSet();
            if (axes.Count == 0)
            {
                if (AttrInt("noop_with_empty_axes", 0) != 0)
                {
                    return x with { Data = null };
                }

                axes = [.. Enumerable.Range(0, x.Shape.Length)];
            }

            var keep = AttrInt("keepdims", 1) != 0;
            var shape = x.Shape.Select((d, i) => (d, i)).Where(p => keep || !axes.Contains(p.i)).Select(p => axes.Contains(p.i) ? DimExpr.Of(1) : p.d).ToArray();
            return new Info(x.Type, shape);
        }

        private Info ShapeOf()
        {
            var x = In(0);
            var rank = x.Shape.Length;
            var start = AttrInt("start", 0);
            var end = AttrInt("end", rank);
            start = Math.Clamp(start < 0 ? start + rank : start, 0, rank);
            end = Math.Clamp(end < 0 ? end + rank : end, 0, rank);
            var dims = x.Shape[(int)start..(int)Math.Max(start, end)];
            return new Info(ElementType.Int64, [DimExpr.Of(dims.Length)], dims);
        }

        private Info ConstantNode()
        {
            if (Attr("value") is { } v)
            {
                var t = v.T;
                var type = (ElementType)t.DataType;
                if (((ElementType)t.DataType).IsFloatingPoint() && t.ElementCount() <= MaxConstantElements)
                {
                    _floatConstants[_node.Output[0]] = t.ToFloats();
                }

                DimExpr[]? data = IsInteger(type) && t.ElementCount() <= MaxConstantElements ? [.. t.ToInt64s().Select(DimExpr.Of)] : null;
                return new Info(type, [.. t.Dims.Select(DimExpr.Of)], data);
            }

            if (Attr("value_int") is { } i)
            {
                return new Info(ElementType.Int64, [], [DimExpr.Of(i.I)]);
            }

            if (Attr("value_ints") is { } ints)
            {
                return new Info(ElementType.Int64, [DimExpr.Of(ints.Ints.Count)], [.. ints.Ints.Select(DimExpr.Of)]);
            }

            if (Attr("value_float") is { } f)
            {
                _floatConstants[_node.Output[0]] = [f.F];
                return new Info(ElementType.Float, []);
            }

            if (Attr("value_floats") is { } fs)
            {
                _floatConstants[_node.Output[0]] = [.. fs.Floats];
                return new Info(ElementType.Float, [DimExpr.Of(fs.Floats.Count)]);
            }

            throw Fail("it has no value attribute Batchwise reads (value, value_int(s), value_float(s))");
        }

        private Info Expand()
        {
            var x = In(0);
            var target = In(1).Data ?? throw Fail("the target shape is computed at run time from values; Batchwise needs it known from shapes");
            return new Info(x.Type, Broadcast(x.Shape, target));
        }

        private Info Pad()
        {
            var x = In(0);
            var rank = x.Shape.Length;
            var pads = _model.Opset >= 11 ? RequireInts(1, "the pads") : AttrInts("pads") ?? throw Fail("pads is missing");
            var axes = _model.Opset >= 18 && Has(3) ? RequireInts(3, "the axes").Select(a => Axis(a, rank)).ToArray() : [.. Enumerable.Range(0, rank)];
            if (pads.Length != 2 * axes.Length)
            {
                throw Fail($"pads has {pads.Length} entries for {axes.Length} axes");
            }

            var shape = (DimExpr[])x.Shape.Clone();
            for (var i = 0; i < axes.Length; i++)
            {
                shape[axes[i]] += DimExpr.Of(pads[i] + pads[i + axes.Length]);
            }

            return new Info(x.Type, shape);
        }
    }
}
