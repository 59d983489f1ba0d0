using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Constant folding: evaluates on the host the nodes whose inputs are all known when the plan is built.</summary>
internal static class HostEvaluator
{
    private static readonly HashSet<string> Foldable = new(StringComparer.Ordinal)
    {
        "Constant", "Shape", "Size", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Gather", "Slice", "Cast",
        "Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Neg", "Abs",
        "Min", "Max", "Where", "Sqrt", "Floor", "Ceil", "Reciprocal", "ConstantOfShape", "Range", "Expand", "Transpose", "Dropout",
    };

    /// <summary>The folded outputs, or null when the node must run on the device.</summary>
    public static HostTensor[]? TryEvaluate(OnnxProto.NodeProto node, PlanValue?[] inputs, long opset)
    {
        var op = node.OpType;
        if (!Foldable.Contains(op))
        {
            return null;
        }

        var attrs = new NodeAttributes(node);
        if (op is "Shape" or "Size")
        {
            var shape = inputs[0]!.Shape;
            if (op == "Size")
            {
                return [HostTensor.OfInts(ElementType.Int64, [], [Shapes.Product(shape)])];
            }

            var rank = shape.Length;
            var start = attrs.Int("start", 0);
            var end = attrs.Int("end", rank);
            start = Math.Clamp(start < 0 ? start + rank : start, 0, rank);
            end = Math.Clamp(end < 0 ? end + rank : end, 0, rank);
            return [HostTensor.Int64s(shape[(int)start..(int)Math.Max(start, end)])];
        }

        if (inputs.Any(v => v is not null && v.Constant is null))
        {
            return null;
        }

        var c = inputs.Select(v => v?.Constant).ToArray();
        return op switch
        {
            "Constant" => [ConstantValue(attrs)],
            "Identity" or "Dropout" => [c[0]!],
            "Reshape" => [c[0]!.WithShape(Shapes.ReshapeTarget(c[0]!.Shape, opset >= 5 ? c[1]!.AsLongs() : attrs.Ints("shape")!, attrs.Int("allowzero", 0) != 0))],
            "Flatten" => [c[0]!.WithShape(FlattenShape(c[0]!.Shape, attrs.Int("axis", 1)))],
            "Squeeze" => [c[0]!.WithShape(Shapes.Squeeze(c[0]!.Shape, opset >= 13 ? c.ElementAtOrDefault(1)?.AsLongs() : attrs.Ints("axes")))],
            "Unsqueeze" => [c[0]!.WithShape(Shapes.Unsqueeze(c[0]!.Shape, opset >= 13 ? c[1]!.AsLongs() : attrs.Ints("axes")!))],
            "Concat" => [Concat(c.Where(t => t is not null).ToArray()!, attrs.Int("axis", 0))],
            "Gather" => [Gather(c[0]!, c[1]!, attrs.Int("axis", 0))],
            "Slice" => [Slice(c, attrs, opset)],
            "Cast" => [c[0]!.CastTo((ElementType)attrs.Int("to", 1))],
            "ConstantOfShape" => [ConstantOfShape(c[0]!, attrs)],
            "Range" => [Range(c[0]!, c[1]!, c[2]!)],
            "Expand" => [Expand(c[0]!, c[1]!.AsLongs())],
            "Transpose" => [Transpose(c[0]!, attrs.Ints("perm"))],
            _ => [Elementwise(op, c.Where(t => t is not null).ToArray()!)],
        };
    }

    public static long[] FlattenShape(long[] shape, long axis)
    {
        var a = axis < 0 ? axis + shape.Length : axis;
        return [Shapes.Product(shape.Take((int)a)), Shapes.Product(shape.Skip((int)a))];
    }

    public static HostTensor ConstantValue(NodeAttributes attrs)
    {
        if (attrs.Get("value") is { } v)
        {
            return HostTensor.FromProto(v.T);
        }

        if (attrs.Get("value_float") is { } f)
        {
            return HostTensor.OfFloats(ElementType.Float, [], [f.F]);
        }

        if (attrs.Get("value_floats") is { } fs)
        {
            return HostTensor.OfFloats(ElementType.Float, [fs.Floats.Count], fs.Floats.Select(x => (double)x).ToArray());
        }

        if (attrs.Get("value_int") is { } i)
        {
            return HostTensor.OfInts(ElementType.Int64, [], [i.I]);
        }

        if (attrs.Get("value_ints") is { } ints)
        {
            return HostTensor.Int64s(ints.Ints.ToArray());
        }

        throw new BatchwiseException("Constant without a supported value attribute", "Use value, value_float(s) or value_int(s).");
    }

    private static HostTensor View(HostTensor src, long[] outShape, long[] srcStrides, long srcBase)
    {
        var outStrides = Kernels.KernelSource.Strides(outShape);
        return HostTensor.Create(src.Type, outShape, i =>
        {
            var off = srcBase;
            for (var d = 0; d < outShape.Length; d++)
            {
                off += i / outStrides[d] % outShape[d] * srcStrides[d];
            }

            return src.IsFloat ? src.Floats![off] : src.Ints![off];
        });
    }

    private static HostTensor Concat(HostTensor[] parts, long axis)
    {
        var rank = parts[0].Shape.Length;
        var a = Shapes.Axis(axis, rank);
        var shape = (long[])parts[0].Shape.Clone();
        shape[a] = parts.Sum(p => p.Shape[a]);
        var outer = Shapes.Product(shape.Take(a));
        var inner = Shapes.Product(shape.Skip(a + 1));
        var values = new List<double>();
        var ints = new List<long>();
        for (long o = 0; o < outer; o++)
        {
            foreach (var p in parts)
            {
                var block = p.Shape[a] * inner;
                for (long j = 0; j < block; j++)
                {
                    if (p.IsFloat)
                    {
                        values.Add(p.Floats![(o * block) + j]);
                    }
                    else
                    {
                        ints.Add(p.Ints![(o * block) + j]);
                    }
                }
            }
        }

        return parts[0].IsFloat ? HostTensor.OfFloats(parts[0].Type, shape, values.ToArray()) : HostTensor.OfInts(parts[0].Type, shape, ints.ToArray());
    }

    private static HostTensor Gather(HostTensor data, HostTensor indices, long axis)
    {
        var a = Shapes.Axis(axis, data.Shape.Length);
        var outShape = data.Shape.Take(a).Concat(indices.Shape).Concat(data.Shape.Skip(a + 1)).ToArray();
        var inner = Shapes.Product(data.Shape.Skip(a + 1));
        var count = indices.Count;
        var dim = data.Shape[a];
        return HostTensor.Create(data.Type, outShape, i =>
        {
            var inIdx = i % inner;
            var j = i / inner % count;
            var o = i / (inner * count);
            var k = indices.Int(j);
            k = k < 0 ? k + dim : k;
            var off = ((o * dim) + k) * inner + inIdx;
            return data.IsFloat ? data.Floats![off] : data.Ints![off];
        });
    }

    private static HostTensor Slice(HostTensor?[] c, NodeAttributes attrs, long opset)
    {
        var data = c[0]!;
        long[] starts, ends;
        long[]? axes, steps;
        if (opset >= 10)
        {
            (starts, ends, axes, steps) = (c[1]!.AsLongs(), c[2]!.AsLongs(), c.ElementAtOrDefault(3)?.AsLongs(), c.ElementAtOrDefault(4)?.AsLongs());
        }
        else
        {
            (starts, ends, axes, steps) = (attrs.Ints("starts")!, attrs.Ints("ends")!, attrs.Ints("axes"), null);
        }

        var (outShape, st, sp) = Shapes.Slice(data.Shape, starts, ends, axes, steps);
        var inStrides = Kernels.KernelSource.Strides(data.Shape);
        var baseOffset = st.Select((s, d) => s * inStrides[d]).Sum();
        return View(data, outShape, inStrides.Select((s, d) => s * sp[d]).ToArray(), baseOffset);
    }

    private static HostTensor Expand(HostTensor data, long[] shape)
    {
        var outShape = Shapes.Broadcast(data.Shape, shape);
        return View(data, outShape, Shapes.BroadcastStrides(data.Shape, outShape), 0);
    }

    private static HostTensor Transpose(HostTensor data, long[]? perm)
    {
        var rank = data.Shape.Length;
        perm ??= Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
        var inStrides = Kernels.KernelSource.Strides(data.Shape);
        return View(data, perm.Select(p => data.Shape[p]).ToArray(), perm.Select(p => inStrides[p]).ToArray(), 0);
    }

    private static HostTensor ConstantOfShape(HostTensor shape, NodeAttributes attrs)
    {
        var value = attrs.Get("value") is { } v ? HostTensor.FromProto(v.T) : HostTensor.OfFloats(ElementType.Float, [1], [0]);
        return HostTensor.Create(value.Type, shape.AsLongs(), _ => value[0]);
    }

    private static HostTensor Range(HostTensor start, HostTensor limit, HostTensor delta)
    {
        var (s, l, d) = (start[0], limit[0], delta[0]);
        var n = (long)Math.Max(Math.Ceiling((l - s) / d), 0);
        return HostTensor.Create(start.Type, [n], i => s + (i * d));
    }

    private static HostTensor Elementwise(string op, HostTensor[] x)
    {
        var outShape = Shapes.Broadcast(x.Select(t => t.Shape).ToArray());
        var strides = x.Select(t => Shapes.BroadcastStrides(t.Shape, outShape)).ToArray();
        var outStrides = Kernels.KernelSource.Strides(outShape);
        var isFloat = x[0].IsFloat;
        var outType = op switch
        {
            "Equal" or "Less" or "Greater" or "LessOrEqual" or "GreaterOrEqual" or "And" or "Or" or "Not" => ElementType.Bool,
            "Where" => x[1].Type,
            _ => x[0].Type,
        };
        long Index(int k, long i)
        {
            long off = 0;
            for (var d = 0; d < outShape.Length; d++)
            {
                off += i / outStrides[d] % outShape[d] * strides[k][d];
            }

            return off;
        }

        double Apply(long i)
        {
            double V(int k) => x[k][Index(k, i)];
            long N(int k) => x[k].Int(Index(k, i));
            return op switch
            {
                "Add" => isFloat ? V(0) + V(1) : N(0) + N(1),
                "Sub" => isFloat ? V(0) - V(1) : N(0) - N(1),
                "Mul" => isFloat ? V(0) * V(1) : N(0) * N(1),
                "Div" => isFloat ? V(0) / V(1) : N(1) == 0 ? 0 : N(0) / N(1),
                "Equal" => V(0) == V(1) ? 1 : 0,
                "Less" => V(0) < V(1) ? 1 : 0,
                "Greater" => V(0) > V(1) ? 1 : 0,
                "LessOrEqual" => V(0) <= V(1) ? 1 : 0,
                "GreaterOrEqual" => V(0) >= V(1) ? 1 : 0,
                "And" => V(0) != 0 && V(1) != 0 ? 1 : 0,
                "Or" => V(0) != 0 || V(1) != 0 ? 1 : 0,
                "Not" => V(0) == 0 ? 1 : 0,
                "Neg" => -V(0),
                "Abs" => Math.Abs(V(0)),
                "Min" => Enumerable.Range(0, x.Length).Min(V),
                "Max" => Enumerable.Range(0, x.Length).Max(V),
                "Where" => V(0) != 0 ? V(1) : V(2),
                "Sqrt" => Math.Sqrt(V(0)),
                "Floor" => Math.Floor(V(0)),
                "Ceil" => Math.Ceiling(V(0)),
                "Reciprocal" => 1 / V(0),
                _ => throw new BatchwiseException($"cannot fold {op}", "This is a bug in the cuda engine."),
            };
        }

        if (outType.IsFloatingPoint())
        {
            var values = new double[Shapes.Product(outShape)];
            for (long i = 0; i < values.Length; i++)
            {
                var v = Apply(i);
                values[i] = outType == ElementType.Float ? (float)v : v;
            }

            return HostTensor.OfFloats(outType, outShape, values);
        }

        // Integer arithmetic stays exact in longs (int64 extremes such as INT64_MAX in Slice ends must survive).
        var ints = new long[Shapes.Product(outShape)];
        for (long i = 0; i < ints.Length; i++)
        {
            ints[i] = op switch
            {
                "Add" => x[0].Int(Index(0, i)) + x[1].Int(Index(1, i)),
                "Sub" => x[0].Int(Index(0, i)) - x[1].Int(Index(1, i)),
                "Mul" => x[0].Int(Index(0, i)) * x[1].Int(Index(1, i)),
                "Neg" => -x[0].Int(Index(0, i)),
                "Where" => x[0].Int(Index(0, i)) != 0 ? x[1].Int(Index(1, i)) : x[2].Int(Index(2, i)),
                "Min" => Enumerable.Range(0, x.Length).Min(k => x[k].Int(Index(k, i))),
                "Max" => Enumerable.Range(0, x.Length).Max(k => x[k].Int(Index(k, i))),
                _ => (long)Apply(i),
            };
        }

        return HostTensor.OfInts(outType, outShape, ints);
    }
}
