using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Indexing, scattering, rearranging and selecting: GatherElements, GatherND, ScatterElements, ScatterND, Tile,
/// DepthToSpace, SpaceToDepth, OneHot, Trilu, NonZero, CumSum, TopK, ArgMax, ArgMin.
/// </summary>
internal static class IndexingOperators
{
    private static readonly CostFunction CopyCost = _ => new OperatorWork(0);

    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("GatherElements", [11, 13])
            .WithAttributes(Attribute.Int("axis", 0))
            .Shape(c =>
            {
                _ = c.Axis(c.Int("axis"), c.In(0).Shape.Length);
                return [new SymbolicValue(c.In(0).Type, c.In(1).Shape)];
            })
            .Host(c =>
            {
                var (data, indices) = (c.In(0), c.In(1));
                var axis = c.Axis(c.Int("axis"), data.Shape.Length);
                var dataStrides = TensorMath.Strides(data.Shape);
                var position = new long[indices.Shape.Length];
                return [DataMovementOperators.Build(data, indices.Shape, i =>
                {
                    ConvolutionOperators.Unravel(i, indices.Shape, position);
                    position[axis] = Index(c, indices.Int(i), data.Shape[axis]);
                    return Offset(position, dataStrides);
                })];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("GatherND", [11, 12, 13])
            .WithAttributes(Attribute.Int("batch_dims", 0, since: 12))
            .Shape(c =>
            {
                var (data, indices) = (c.In(0), c.In(1));
                var b = c.Opset >= 12 ? (int)c.Int("batch_dims") : 0;
                var k = indices.Shape[^1];
                if (!k.IsConcrete)
                {
                    throw c.Fail("the last dimension of indices is symbolic");
                }

                return [new SymbolicValue(data.Type, [.. indices.Shape[..^1], .. data.Shape.Skip(b + (int)k.Value)])];
            })
            .Host(c =>
            {
                var (data, indices) = (c.In(0), c.In(1));
                var b = c.Opset >= 12 ? (int)c.Int("batch_dims") : 0;
                var k = (int)indices.Shape[^1];
                var outShape = c.OutputShape(0);
                var slice = TensorMath.Product(data.Shape.Skip(b + k));
                var dataStrides = TensorMath.Strides(data.Shape);
                var batchCount = TensorMath.Product(data.Shape.Take(b));
                var tuplesPerBatch = TensorMath.Product(indices.Shape[b..^1]);
                return [DataMovementOperators.Build(data, outShape, i =>
                {
                    var tuple = i / slice;
                    var batch = tuple / Math.Max(1, tuplesPerBatch);
                    long offset = batchCount > 1 || b > 0 ? UnravelOffset(batch, data.Shape[..b], dataStrides[..b]) : 0;
                    for (var j = 0; j < k; j++)
                    {
                        offset += Index(c, indices.Int((tuple * k) + j), data.Shape[b + j]) * dataStrides[b + j];
                    }

                    return offset + (i % slice);
                })];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("ScatterElements", [11, 13, 16, 18])
            .WithAttributes(Attribute.Int("axis", 0), Attribute.String("reduction", "none", since: 16))
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var (data, indices, updates) = (c.In(0), c.In(1), c.In(2));
                var axis = c.Axis(c.Int("axis"), data.Shape.Length);
                var strides = TensorMath.Strides(data.Shape);
                var position = new long[indices.Shape.Length];
                var reduce = Reduction(c);
                var result = data.AsDoubles();
                for (long i = 0; i < indices.Count; i++)
                {
                    ConvolutionOperators.Unravel(i, indices.Shape, position);
                    position[axis] = Index(c, indices.Int(i), data.Shape[axis]);
                    var at = Offset(position, strides);
                    result[at] = reduce(result[at], updates[i]);
                }

                return [HostTensor.Create(data.Type, data.Shape, i => result[i])];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("ScatterND", [11, 13, 16, 18])
            .WithAttributes(Attribute.String("reduction", "none", since: 16))
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var (data, indices, updates) = (c.In(0), c.In(1), c.In(2));
                var k = (int)indices.Shape[^1];
                var strides = TensorMath.Strides(data.Shape);
                var slice = TensorMath.Product(data.Shape.Skip(k));
                var reduce = Reduction(c);
                var result = data.AsDoubles();
                var tuples = indices.Count / Math.Max(1, k);
                for (long t = 0; t < tuples; t++)
                {
                    long offset = 0;
                    for (var j = 0; j < k; j++)
                    {
                        offset += Index(c, indices.Int((t * k) + j), data.Shape[j]) * strides[j];
                    }

                    for (long e = 0; e < slice; e++)
                    {
                        result[offset + e] = reduce(result[offset + e], updates[(t * slice) + e]);
                    }
                }

                return [HostTensor.Create(data.Type, data.Shape, i => result[i])];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Tile", [1, 6, 13])
            .HostInputs([1], since: 6)
            .Shape(c =>
            {
                var x = c.In(0);
                var repeats = c.RequireDims(1, "the repeats");
                if (repeats.Length != x.Shape.Length)
                {
                    throw c.Fail($"repeats has {repeats.Length} entries for a rank-{x.Shape.Length} input");
                }

                return [new SymbolicValue(x.Type, [.. x.Shape.Select((d, i) => d * repeats[i])])];
            })
            .Host(c =>
            {
                var x = c.In(0);
                var shape = c.OutputShape(0);
                var position = new long[shape.Length];
                var strides = TensorMath.Strides(x.Shape);
                return [DataMovementOperators.Build(x, shape, i =>
                {
                    ConvolutionOperators.Unravel(i, shape, position);
                    long offset = 0;
                    for (var d = 0; d < position.Length; d++)
                    {
                        offset += position[d] % x.Shape[d] * strides[d];
                    }

                    return offset;
                })];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("DepthToSpace", [1, 11, 13])
            .WithAttributes(Attribute.Int("blocksize", required: true), Attribute.String("mode", "DCR", since: 11))
            .Shape(c =>
            {
                var x = c.In(0);
                var b = DimExpr.Of(c.Int("blocksize"));
                return [new SymbolicValue(x.Type, [x.Shape[0], x.Shape[1].DivideBy(b * b), x.Shape[2] * b, x.Shape[3] * b])];
            })
            .Host(c =>
            {
                var x = c.In(0);
                var b = c.Int("blocksize");
                var (n, ch, h, w) = (x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]);
                var crd = c.Opset >= 11 && c.String("mode") == "CRD";
                long[] viewShape = crd ? [n, ch / (b * b), b, b, h, w] : [n, b, b, ch / (b * b), h, w];
                long[] perm = crd ? [0, 1, 4, 2, 5, 3] : [0, 3, 4, 1, 5, 2];
                return [Permute(x, viewShape, perm).WithShape(c.OutputShape(0))];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("SpaceToDepth", [1, 13])
            .WithAttributes(Attribute.Int("blocksize", required: true))
            .Shape(c =>
            {
                var x = c.In(0);
                var b = DimExpr.Of(c.Int("blocksize"));
                return [new SymbolicValue(x.Type, [x.Shape[0], x.Shape[1] * b * b, x.Shape[2].DivideBy(b), x.Shape[3].DivideBy(b)])];
            })
            .Host(c =>
            {
                var x = c.In(0);
                var b = c.Int("blocksize");
                var (n, ch, h, w) = (x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]);
                return [Permute(x, [n, ch, h / b, b, w / b, b], [0, 3, 5, 1, 2, 4]).WithShape(c.OutputShape(0))];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("OneHot", [9, 11])
            .WithAttributes(Attribute.Int("axis", -1))
            .HostInputs([1], since: 9)
            .Shape(c =>
            {
                var indices = c.In(0);
                var depth = c.ConstFloats(1) is { } d ? DimExpr.Of((long)d[0]) : throw c.Fail("the depth is computed at run time; Batchwise needs it known from shapes");
                var rank = indices.Shape.Length + 1;
                var axis = c.Axis(c.Int("axis"), rank);
                return [new SymbolicValue(c.In(2).Type, [.. indices.Shape[..axis], depth, .. indices.Shape[axis..]])];
            })
            .Host(c =>
            {
                var (indices, values) = (c.In(0), c.In(2));
                var depth = (long)c.In(1)[0];
                var shape = c.OutputShape(0);
                var axis = c.Axis(c.Int("axis"), shape.Length);
                var inner = TensorMath.Product(shape.Skip(axis + 1));
                return [HostTensor.Create(values.Type, shape, i =>
                {
                    var k = i / inner % depth;
                    var index = (long)indices[((i / (inner * depth)) * inner) + (i % inner)];
                    index = index < 0 ? index + depth : index;
                    return values[index == k ? 1 : 0];
                })];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Trilu", [14])
            .WithAttributes(Attribute.Int("upper", 1))
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var x = c.In(0);
                var k = c.Optional(1) is { } kt ? kt.Int(0) : 0;
                var upper = c.Int("upper") != 0;
                var (rows, cols) = (x.Shape[^2], x.Shape[^1]);
                return [DataMovementOperators.Build(x, x.Shape, i =>
                {
                    var (r, col) = (i / cols % rows, i % cols);
                    return (upper ? col - r >= k : col - r <= k) ? i : -1;
                })];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("NonZero", [9, 13])
            .DataDependentShape("NonZero's output size depends on the values: Batchwise infers a symbolic dimension unless the input is known")
            .Shape(c => [new SymbolicValue(ElementType.Int64, [DimExpr.Of(c.In(0).Shape.Length), DimExpr.Symbol($"nonzero({c.Node.Input[0]})")])])
            .Host(c =>
            {
                var x = c.In(0);
                var nonzero = Enumerable.Range(0, (int)x.Count).Where(i => x[i] != 0).ToList();
                var rank = x.Shape.Length;
                var position = new long[rank];
                var result = new long[rank * nonzero.Count];
                for (var j = 0; j < nonzero.Count; j++)
                {
                    ConvolutionOperators.Unravel(nonzero[j], x.Shape, position);
                    for (var d = 0; d < rank; d++)
                    {
                        result[(d * nonzero.Count) + j] = position[d];
                    }
                }

                return [HostTensor.OfInts(ElementType.Int64, [rank, nonzero.Count], result)];
            }, eager: false)
            .Costs(OpCategory.DataMovement, c => new OperatorWork(c.InputElements(0)));

        yield return Define("CumSum", [11, 14])
            .WithAttributes(Attribute.Int("exclusive", 0), Attribute.Int("reverse", 0))
            .HostInputs([1], since: 11)
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var x = c.In(0);
                var axis = c.Axis(c.In(1).Int(0), x.Shape.Length);
                var (exclusive, reverse) = (c.Int("exclusive") != 0, c.Int("reverse") != 0);
                var size = x.Shape[axis];
                var inner = TensorMath.Product(x.Shape.Skip(axis + 1));
                var outer = x.Count / Math.Max(1, size * inner);
                var result = new double[x.Count];
                for (long o = 0; o < outer; o++)
                {
                    for (long i = 0; i < inner; i++)
                    {
                        double sum = 0;
                        for (long s = 0; s < size; s++)
                        {
                            var k = reverse ? size - 1 - s : s;
                            var at = (((o * size) + k) * inner) + i;
                            if (exclusive)
                            {
                                result[at] = sum;
                                sum += x[at];
                            }
                            else
                            {
                                sum += x[at];
                                result[at] = sum;
                            }
                        }
                    }
                }

                return [HostTensor.Create(x.Type, x.Shape, i => result[i])];
            }, eager: false)
            .Costs(OpCategory.Reduction, c => new OperatorWork(c.InputElements(0)));

        yield return Define("TopK", [1, 10, 11])
            .WithAttributes(
                Attribute.Int("axis", -1),
                Attribute.Int("k", required: true, until: 9),
                Attribute.Int("largest", 1, since: 11),
                Attribute.Int("sorted", 1, since: 11))
            .HostInputs([1], since: 10)
            .Shape(c =>
            {
                var x = c.In(0);
                var axis = c.Axis(c.Int("axis"), x.Shape.Length);
                var k = c.Opset >= 10 ? c.RequireDims(1, "k")[0] : DimExpr.Of(c.Int("k"));
                var shape = (DimExpr[])x.Shape.Clone();
                shape[axis] = k;
                return [new SymbolicValue(x.Type, shape), new SymbolicValue(ElementType.Int64, shape)];
            })
            .Host(c =>
            {
                var x = c.In(0);
                var axis = c.Axis(c.Int("axis"), x.Shape.Length);
                var k = c.Opset >= 10 ? c.In(1).Int(0) : c.Int("k");
                var largest = c.Opset < 11 || c.Int("largest") != 0;
                var (size, inner) = (x.Shape[axis], TensorMath.Product(x.Shape.Skip(axis + 1)));
                var shape = c.OutputShape(0);
                var values = new double[TensorMath.Product(shape)];
                var indices = new long[values.Length];
                var outer = x.Count / Math.Max(1, size * inner);
                for (long o = 0; o < outer; o++)
                {
                    for (long i = 0; i < inner; i++)
                    {
                        // Ties keep the lower index first, as ONNX specifies.
                        var order = Enumerable.Range(0, (int)size).Select(s => (Value: x[(((o * size) + s) * inner) + i], Index: (long)s))
                            .OrderBy(p => largest ? -p.Value : p.Value).ThenBy(p => p.Index).Take((int)k).ToList();
                        for (var j = 0; j < order.Count; j++)
                        {
                            var at = (((o * k) + j) * inner) + i;
                            (values[at], indices[at]) = (order[j].Value, order[j].Index);
                        }
                    }
                }

                return [HostTensor.Create(x.Type, shape, i => values[i]), HostTensor.OfInts(ElementType.Int64, shape, indices)];
            }, eager: false)
            .Costs(OpCategory.Reduction, c => new OperatorWork(c.InputElements(0)));

        yield return ArgExtreme(Define("ArgMax", [1, 11, 12, 13]), max: true);
        yield return ArgExtreme(Define("ArgMin", [1, 11, 12, 13]), max: false);
    }

    private static OperatorSchema ArgExtreme(OperatorSchema s, bool max) => s
        .WithAttributes(Attribute.Int("axis", 0), Attribute.Int("keepdims", 1), Attribute.Int("select_last_index", 0, since: 12))
        .Shape(c =>
        {
            var x = c.In(0);
            var axis = c.Axis(c.Int("axis"), x.Shape.Length);
            var keep = c.Int("keepdims") != 0;
            return [new SymbolicValue(ElementType.Int64, [.. x.Shape.Select((d, i) => (d, i)).Where(p => keep || p.i != axis).Select(p => p.i == axis ? DimExpr.Of(1) : p.d)])];
        })
        .Host(c =>
        {
            var x = c.In(0);
            var axis = c.Axis(c.Int("axis"), x.Shape.Length);
            var last = c.Opset >= 12 && c.Int("select_last_index") != 0;
            var (size, inner) = (x.Shape[axis], TensorMath.Product(x.Shape.Skip(axis + 1)));
            var shape = c.OutputShape(0);
            return [HostTensor.CreateInts(ElementType.Int64, shape, j =>
            {
                var (o, i) = (j / inner, j % inner);
                long best = 0;
                for (long s = 1; s < size; s++)
                {
                    var (v, b) = (x[(((o * size) + s) * inner) + i], x[(((o * size) + best) * inner) + i]);
                    if ((max ? v > b : v < b) || (last && v == b))
                    {
                        best = s;
                    }
                }

                return best;
            })];
        }, eager: false)
        .Costs(OpCategory.Reduction, c => new OperatorWork(c.InputElements(0)));

    private static long Index(EvaluationContext c, long index, long size)
    {
        var k = index < 0 ? index + size : index;
        return k >= 0 && k < size ? k : throw c.Fail($"index {index} is out of range for a dimension of size {size}");
    }

    private static long Offset(long[] position, long[] strides)
    {
        long offset = 0;
        for (var d = 0; d < position.Length; d++)
        {
            offset += position[d] * strides[d];
        }

        return offset;
    }

    private static long UnravelOffset(long index, long[] shape, long[] strides)
    {
        var position = new long[shape.Length];
        ConvolutionOperators.Unravel(index, shape, position);
        return Offset(position, strides);
    }

    /// <summary>The values of <paramref name="x"/> viewed at <paramref name="viewShape"/> and transposed by <paramref name="perm"/>.</summary>
    private static HostTensor Permute(HostTensor x, long[] viewShape, long[] perm)
    {
        var strides = TensorMath.Strides(viewShape);
        return TensorMath.Gather(x.WithShape(viewShape), [.. perm.Select(p => viewShape[p])], [.. perm.Select(p => strides[p])]);
    }

    private static Func<double, double, double> Reduction(EvaluationContext c) => (c.Opset >= 16 ? c.String("reduction") : "none") switch
    {
        "none" => (_, u) => u,
        "add" => (a, u) => a + u,
        "mul" => (a, u) => a * u,
        "max" => Math.Max,
        "min" => Math.Min,
        var r => throw c.Fail($"reduction '{r}' is not one ONNX defines"),
    };
}
