using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Shapes, views and constants: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Constant,
/// ConstantOfShape, Range, Cast, CastLike, Expand. Views and shape arithmetic launch no kernel (category Metadata).
/// </summary>
internal static class ShapeOperators
{
    /// <summary>Integer constants up to this size are carried through inference element by element.</summary>
    private const int MaxDataElements = 4096;

    private static readonly CostFunction NoWork = _ => new OperatorWork(0);

    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("Shape", [1, 13, 15, 19, 21, 23])
            .WithAttributes(Attribute.Int("end", since: 15), Attribute.Int("start", 0, since: 15))
            .DependsOnlyOnShapes()
            .Shape(c =>
            {
                var x = c.In(0);
                var (start, end) = ShapeRange(x.Shape.Length, c.Opset >= 15 ? c.Int("start", 0) : 0, c.Opset >= 15 ? c.Int("end", x.Shape.Length) : x.Shape.Length);
                var dims = x.Shape[start..end];
                return [new SymbolicValue(ElementType.Int64, [DimExpr.Of(dims.Length)], dims)];
            })
            .Host(c =>
            {
                var shape = c.ShapeOf(0);
                var (start, end) = ShapeRange(shape.Length, c.Opset >= 15 ? c.Int("start", 0) : 0, c.Opset >= 15 ? c.Int("end", shape.Length) : shape.Length);
                return [HostTensor.Int64s(shape[start..end])];
            })
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Size", [1, 13, 19, 21, 23])
            .DependsOnlyOnShapes()
            .Shape(c => [new SymbolicValue(ElementType.Int64, [], [InferenceContext.Product(c.In(0).Shape)])])
            .Host(c => [HostTensor.OfInts(ElementType.Int64, [], [TensorMath.Product(c.ShapeOf(0))])])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Reshape", [1, 5, 13, 14, 19, 21, 23])
            .WithAttributes(Attribute.Int("allowzero", 0, since: 14), Attribute.Ints("consumed_inputs", until: 4), Attribute.Ints("shape", until: 4))
            .HostInputs([1], since: 5)
            .Shape(Reshape)
            .Host(c => [c.In(0).WithShape(c.OutputShape(0))])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Flatten", [1, 9, 11, 13, 21, 23])
            .WithAttributes(Attribute.Int("axis", 1))
            .Shape(c =>
            {
                var x = c.In(0);
                var rank = x.Shape.Length;
                var a = c.Int("axis");
                var axis = a < -rank || a > rank ? throw c.Fail($"axis {a} is out of range for rank {rank}") : (int)(a < 0 ? a + rank : a);
                return [x with { Shape = [InferenceContext.Product(x.Shape.Take(axis)), InferenceContext.Product(x.Shape.Skip(axis))], Value = null }];
            })
            .Host(c => [c.In(0).WithShape(c.OutputShape(0))])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Squeeze", [1, 11, 13, 21, 23])
            .WithAttributes(Attribute.Ints("axes", until: 12))
            .HostInputs([1], since: 13)
            .Shape(c =>
            {
                var x = c.In(0);
                var axes = Axes(c, 13).Select(a => c.Axis(a, x.Shape.Length)).ToHashSet();
                foreach (var a in axes)
                {
                    if (x.Shape[a].IsConcrete && x.Shape[a].Value != 1)
                    {
                        throw c.Fail($"axis {a} has size {x.Shape[a]}, not 1");
                    }
                }

                var shape = x.Shape.Where((d, i) => axes.Count > 0 ? !axes.Contains(i) : !(d.IsConcrete && d.Value == 1)).ToArray();
                return [x with { Shape = shape, Value = null }];
            })
            .Host(c => [c.In(0).WithShape(c.OutputShape(0))])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Unsqueeze", [1, 11, 13, 21, 23])
            .WithAttributes(Attribute.Ints("axes", required: true, until: 12))
            .HostInputs([1], since: 13)
            .Shape(c =>
            {
                var x = c.In(0);
                var axes = Axes(c, 13);
                var rank = x.Shape.Length + axes.Length;
                var normalised = axes.Select(a => c.Axis(a, rank)).ToHashSet();
                var shape = new DimExpr[rank];
                var next = 0;
                for (var i = 0; i < rank; i++)
                {
                    shape[i] = normalised.Contains(i) ? DimExpr.Of(1) : x.Shape[next++];
                }

                return [x with { Shape = shape, Value = null }];
            })
            .Host(c => [c.In(0).WithShape(c.OutputShape(0))])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Identity", [1, 13, 14, 16, 19, 21, 23])
            .Shape(c => [c.In(0)])
            .Host(c => [c.In(0)])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Dropout", [1, 6, 7, 10, 12, 13, 22])
            .WithAttributes(
                Attribute.Ints("consumed_inputs", until: 5),
                Attribute.Int("is_test", 0, until: 6),
                Attribute.Float("ratio", 0.5f, until: 11),
                Attribute.Int("seed", since: 12))
            .HostInputs([1, 2], since: 12)
            .Shape(c => [c.In(0), new SymbolicValue(ElementType.Bool, c.In(0).Shape)])
            .Host(c =>
            {
                if (c.Optional(2) is { } training && training.Count > 0 && training[0] != 0)
                {
                    throw c.Fail("training mode drops random elements; it has no fixed value");
                }

                var x = c.In(0);
                return [x, HostTensor.CreateInts(ElementType.Bool, x.Shape, _ => 1)];
            })
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("Constant", [1, 9, 11, 12, 13, 19, 21, 23])
            .WithAttributes(
                Attribute.SparseTensor("sparse_value", since: 11),
                Attribute.Tensor("value", required: true, until: 10),
                Attribute.Tensor("value", since: 11),
                Attribute.Float("value_float", since: 12),
                Attribute.Floats("value_floats", since: 12),
                Attribute.Int("value_int", since: 12),
                Attribute.Ints("value_ints", since: 12),
                Attribute.String("value_string", since: 12),
                Attribute.Strings("value_strings", since: 12))
            .Shape(c =>
            {
                var a = c.Attributes;
                if (a.Get("value") is { } v)
                {
                    var type = (ElementType)v.T.DataType;
                    var small = v.T.ElementCount() <= MaxDataElements && IsInteger(type);
                    return [new SymbolicValue(type, [.. v.T.Dims.Select(DimExpr.Of)], small ? [.. v.T.ToInt64s().Select(DimExpr.Of)] : null)];
                }

                return [SymbolicValue.Of(ConstantValue(c.Attributes, c.Where))];
            })
            .Host(c => [ConstantValue(c.Attributes, c.Where)])
            .Costs(OpCategory.Metadata, NoWork);

        yield return Define("ConstantOfShape", [9, 20, 21, 23])
            .WithAttributes(Attribute.Tensor("value"))
            .HostInputs([0], since: 9)
            .Shape(c =>
            {
                var type = c.Attributes.Get("value") is { } v ? (ElementType)v.T.DataType : ElementType.Float;
                return [new SymbolicValue(type, c.RequireDims(0, "the output shape"))];
            })
            .Host(c =>
            {
                var value = c.Attributes.Get("value") is { } v ? HostTensor.FromProto(v.T) : HostTensor.OfFloats(ElementType.Float, [1], [0]);
                return [HostTensor.Create(value.Type, c.In(0).AsLongs(), _ => value[0])];
            })
            .Costs(OpCategory.DataMovement, NoWork);

        yield return Define("Range", [11])
            .HostInputs([0, 1, 2], since: 11)
            .Shape(c =>
            {
                var type = c.In(0).Type;
                var (start, limit, delta) = (c.Dims(0), c.Dims(1), c.Dims(2));
                var (s, l, d) = (c.ConstFloats(0), c.ConstFloats(1), c.ConstFloats(2));
                if (s is not null && l is not null && d is not null)
                {
                    return [new SymbolicValue(type, [DimExpr.Of(RangeLength(s[0], l[0], d[0]))])];
                }

                // Position ids: Range(0, seq, 1) has seq elements, whatever seq is.
                if (start is [{ IsConcrete: true } s0] && delta is [{ IsConcrete: true, Value: 1 }] && limit is [var l0])
                {
                    return [new SymbolicValue(type, [l0 - s0])];
                }

                return [new SymbolicValue(type, [DimExpr.Symbol($"range({string.Join(",", c.Node.Input)})")])];
            })
            .Host(c =>
            {
                var (s, l, d) = (c.In(0), c.In(1), c.In(2));
                var n = RangeLength(s[0], l[0], d[0]);
                return [s.IsFloat ? HostTensor.Create(s.Type, [n], i => s[0] + (i * d[0])) : HostTensor.CreateInts(s.Type, [n], i => s.Int(0) + (i * d.Int(0)))];
            })
            .Costs(OpCategory.Elementwise, c => new OperatorWork(c.OutputElements));

        yield return Define("Cast", [1, 6, 9, 13, 19, 21, 23])
            .WithAttributes(Attribute.Int("saturate", 1, since: 19), Attribute.String("to", required: true, until: 5), Attribute.Int("to", required: true, since: 6))
            .Shape(c =>
            {
                var x = c.In(0);
                var to = (ElementType)c.Int("to");
                return [new SymbolicValue(to, x.Shape, IsInteger(to) && to != ElementType.Bool ? x.Data : null)];
            })
            .Host(c => [c.In(0).CastTo((ElementType)c.Int("to"))])
            .Costs(OpCategory.DataMovement, NoWork);

        yield return Define("CastLike", [15, 19, 21, 23])
            .WithAttributes(Attribute.Int("saturate", 1, since: 19))
            .Shape(c =>
            {
                var (x, to) = (c.In(0), c.In(1).Type);
                return [new SymbolicValue(to, x.Shape, IsInteger(to) && to != ElementType.Bool ? x.Data : null)];
            })
            .Host(c => [c.In(0).CastTo(c.TypeOf(1))])
            .Costs(OpCategory.DataMovement, NoWork);

        yield return Define("Expand", [8, 13])
            .HostInputs([1], since: 8)
            .Shape(c =>
            {
                var x = c.In(0);
                return [new SymbolicValue(x.Type, c.Broadcast(x.Shape, c.RequireDims(1, "the target shape")))];
            })
            .Host(c =>
            {
                var x = c.In(0);
                var shape = c.OutputShape(0);
                return [TensorMath.Gather(x, shape, TensorMath.BroadcastStrides(x.Shape, shape))];
            })
            .Costs(OpCategory.DataMovement, NoWork);
    }

    internal static bool IsInteger(ElementType t) => t is ElementType.Int64 or ElementType.Int32 or ElementType.Int16 or ElementType.Int8 or ElementType.UInt8
        or ElementType.UInt16 or ElementType.UInt32 or ElementType.UInt64 or ElementType.Bool;

    private static (int Start, int End) ShapeRange(int rank, long start, long end)
    {
        start = Math.Clamp(start < 0 ? start + rank : start, 0, rank);
        end = Math.Clamp(end < 0 ? end + rank : end, 0, rank);
        return ((int)start, (int)Math.Max(start, end));
    }

    private static long RangeLength(double start, double limit, double delta) => delta == 0
        ? throw new BatchwiseException("Range's delta is 0", "Use a non-zero delta.")
        : (long)Math.Max(Math.Ceiling((limit - start) / delta), 0);

    /// <summary>Squeeze's and Unsqueeze's axes: an input from <paramref name="opsetWithInput"/>, an attribute before.</summary>
    internal static long[] Axes(InferenceContext c, int opsetWithInput) =>
        c.Opset >= opsetWithInput ? (c.Has(1) ? c.RequireInts(1, "the axes") : []) : c.Ints("axes") ?? [];

    private static SymbolicValue[] Reshape(InferenceContext c)
    {
        var x = c.In(0);
        DimExpr[] target = c.Opset >= 5
            ? c.RequireDims(1, "the target shape")
            : [.. (c.Ints("shape") ?? throw c.Fail("the shape attribute is missing")).Select(DimExpr.Of)];
        var allowZero = c.Opset >= 14 && c.Int("allowzero") != 0;
        var shape = new DimExpr[target.Length];
        var inferred = -1;
        for (var i = 0; i < target.Length; i++)
        {
            var t = target[i];
            if (t.IsConcrete && t.Value == 0 && !allowZero)
            {
                shape[i] = i < x.Shape.Length ? x.Shape[i] : throw c.Fail($"target dimension {i} is 0 (copy) but the input has rank {x.Shape.Length}");
            }
            else if (t.IsConcrete && t.Value == -1)
            {
                if (inferred >= 0)
                {
                    throw c.Fail("the target shape has more than one -1");
                }

                inferred = i;
            }
            else
            {
                shape[i] = t;
            }
        }

        var total = InferenceContext.Product(x.Shape);
        if (inferred >= 0)
        {
            var known = InferenceContext.Product(shape.Where((_, i) => i != inferred));
            shape[inferred] = known.IsConcrete && known.Value == 0 ? DimExpr.Of(0) : total.DivideBy(known);
        }
        else if (total.IsConcrete && InferenceContext.Product(shape) is { IsConcrete: true } p && p.Value != total.Value)
        {
            throw c.Fail($"cannot reshape {total.Value} elements [{string.Join(", ", x.Shape)}] to [{string.Join(", ", shape)}]");
        }

        if (shape.Any(d => d.IsConcrete && d.Value < 0))
        {
            throw c.Fail($"cannot reshape [{string.Join(", ", x.Shape)}] to [{string.Join(", ", target)}]");
        }

        return [x with { Shape = shape, Value = null }];
    }

    /// <summary>A Constant node's value from whichever attribute holds it.</summary>
    internal static HostTensor ConstantValue(NodeAttributes a, string where)
    {
        if (a.Get("value") is { } v)
        {
            return HostTensor.FromProto(v.T);
        }

        if (a.Get("value_float") is { } f)
        {
            return HostTensor.OfFloats(ElementType.Float, [], [f.F]);
        }

        if (a.Get("value_floats") is { } fs)
        {
            return HostTensor.OfFloats(ElementType.Float, [fs.Floats.Count], [.. fs.Floats.Select(x => (double)x)]);
        }

        if (a.Get("value_int") is { } i)
        {
            return HostTensor.OfInts(ElementType.Int64, [], [i.I]);
        }

        if (a.Get("value_ints") is { } ints)
        {
            return HostTensor.Int64s([.. ints.Ints]);
        }

        throw new BatchwiseException($"{where} holds a value Batchwise does not compute with (sparse or string)", "Use value, value_float(s) or value_int(s).");
    }
}
