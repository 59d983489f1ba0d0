using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>Copies without math: Concat, Split, Slice, Transpose, Gather, Pad, Resize, Upsample (no FLOPs counted).</summary>
internal static class DataMovementOperators
{
    private static readonly CostFunction CopyCost = _ => new OperatorWork(0);

    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("Concat", [1, 4, 11, 13])
            .WithAttributes(Attribute.Int("axis", until: 3), Attribute.Int("axis", required: true, since: 4))
            .Shape(c =>
            {
                var parts = c.Present().ToList();
                var first = parts[0];
                var axis = c.Axis(c.Int("axis", 1), first.Shape.Length);
                var shape = (DimExpr[])first.Shape.Clone();
                foreach (var p in parts.Skip(1))
                {
                    if (p.Shape.Length != shape.Length)
                    {
                        throw c.Fail($"inputs have ranks {shape.Length} and {p.Shape.Length}");
                    }

                    shape[axis] += p.Shape[axis];
                }

                DimExpr[]? data = parts.All(p => p.Data is not null) && shape.Length <= 1 ? [.. parts.SelectMany(p => p.Data!)] : null;
                return [new SymbolicValue(first.Type, shape, data)];
            })
            .Host(c =>
            {
                var parts = c.Present();
                var shape = c.OutputShape(0);
                var axis = c.Axis(c.Int("axis", 1), shape.Length);
                var outer = TensorMath.Product(shape.Take(axis));
                var inner = TensorMath.Product(shape.Skip(axis + 1));
                var result = Empty(parts[0].Type, shape);
                long at = 0;
                for (long o = 0; o < outer; o++)
                {
                    foreach (var p in parts)
                    {
                        var block = p.Shape[axis] * inner;
                        Copy(p, o * block, result, at, block);
                        at += block;
                    }
                }

                return [result];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Split", [1, 2, 11, 13, 18])
            .WithAttributes(Attribute.Int("axis", until: 1), Attribute.Int("axis", 0, since: 2), Attribute.Int("num_outputs", since: 18), Attribute.Ints("split", until: 12))
            .HostInputs([1], since: 13)
            .Shape(Split)
            .Host(c =>
            {
                var x = c.In(0);
                var axis = c.Axis(c.Int("axis", 0), x.Shape.Length);
                var strides = TensorMath.Strides(x.Shape);
                var result = new HostTensor[c.OutputCount];
                long offset = 0;
                for (var k = 0; k < result.Length; k++)
                {
                    var shape = c.OutputShape(k);
                    result[k] = TensorMath.Gather(x, shape, strides, offset * strides[axis]);
                    offset += shape[axis];
                }

                return result;
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Slice", [1, 10, 11, 13])
            .WithAttributes(Attribute.Ints("axes", until: 9), Attribute.Ints("ends", required: true, until: 9), Attribute.Ints("starts", required: true, until: 9))
            .HostInputs([1, 2, 3, 4], since: 10)
            .Shape(Slice)
            .Host(c =>
            {
                var x = c.In(0);
                var (starts, ends, axes, steps) = SliceArguments(c.Opset, c.Attributes, i => c.Optional(i)?.AsLongs());
                var (shape, first, step) = SliceRanges(x.Shape, starts!, ends!, axes, steps, c.Fail);
                var strides = TensorMath.Strides(x.Shape);
                return [TensorMath.Gather(x, shape, [.. strides.Select((s, d) => s * step[d])], first.Select((f, d) => f * strides[d]).Sum())];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Transpose", [1, 13, 21, 23])
            .WithAttributes(Attribute.Ints("perm"))
            .Shape(c =>
            {
                var x = c.In(0);
                var perm = c.Ints("perm") ?? [.. Enumerable.Range(0, x.Shape.Length).Reverse().Select(i => (long)i)];
                if (perm.Length != x.Shape.Length)
                {
                    throw c.Fail($"perm has {perm.Length} entries for a rank-{x.Shape.Length} input");
                }

                return [new SymbolicValue(x.Type, [.. perm.Select(p => x.Shape[c.Axis(p, x.Shape.Length)])])];
            })
            .Host(c =>
            {
                var x = c.In(0);
                var perm = c.Ints("perm") ?? [.. Enumerable.Range(0, x.Shape.Length).Reverse().Select(i => (long)i)];
                var strides = TensorMath.Strides(x.Shape);
                return [TensorMath.Gather(x, c.OutputShape(0), [.. perm.Select(p => strides[p])])];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Gather", [1, 11, 13])
            .WithAttributes(Attribute.Int("axis", 0))
            .Shape(c =>
            {
                var (data, indices) = (c.In(0), c.In(1));
                var axis = c.Axis(c.Int("axis"), data.Shape.Length);
                DimExpr[] shape = [.. data.Shape.Take(axis), .. indices.Shape, .. data.Shape.Skip(axis + 1)];
                DimExpr[]? values = null;
                if (data.Data is { } d && data.Shape.Length == 1 && c.ConstInts(1) is { } idx)
                {
                    var n = d.Length;
                    values = [.. idx.Select(i => i < 0 ? i + n : i).Select(i => i >= 0 && i < n ? d[i] : throw c.Fail($"index {i} is out of range for {n} elements"))];
                }

                return [new SymbolicValue(data.Type, shape, values)];
            })
            .Host(c =>
            {
                var (data, indices) = (c.In(0), c.In(1));
                var axis = c.Axis(c.Int("axis"), data.Shape.Length);
                var dim = data.Shape[axis];
                var inner = TensorMath.Product(data.Shape.Skip(axis + 1));
                var count = indices.Count;
                var shape = c.OutputShape(0);
                return [Build(data, shape, i =>
                {
                    var k = indices.Int(i / inner % count);
                    k = k < 0 ? k + dim : k;
                    return k < 0 || k >= dim
                        ? throw c.Fail($"index {indices.Int(i / inner % count)} is out of range for axis {axis} of size {dim}")
                        : ((((i / (inner * count)) * dim) + k) * inner) + (i % inner);
                })];
            })
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Pad", [1, 2, 11, 13, 18, 19, 21, 23])
            .WithAttributes(
                Attribute.String("mode", "constant"),
                Attribute.Ints("paddings", required: true, until: 1),
                Attribute.Ints("pads", required: true, since: 2, until: 10),
                Attribute.Float("value", 0.0f, until: 10))
            .HostInputs([1, 2], since: 11)
            .HostInputs([3], since: 18)
            .Shape(c =>
            {
                var x = c.In(0);
                var rank = x.Shape.Length;
                var pads = c.Opset >= 11 ? c.RequireDims(1, "the pads") : [.. (c.Ints("pads") ?? throw c.Fail("pads is missing")).Select(DimExpr.Of)];
                var axes = c.Opset >= 18 && c.Has(3) ? c.RequireInts(3, "the axes").Select(a => c.Axis(a, rank)).ToArray() : [.. Enumerable.Range(0, rank)];
                if (pads.Length != 2 * axes.Length)
                {
                    throw c.Fail($"pads has {pads.Length} entries for {axes.Length} axes");
                }

                var shape = (DimExpr[])x.Shape.Clone();
                for (var i = 0; i < axes.Length; i++)
                {
                    shape[axes[i]] = shape[axes[i]] + pads[i] + pads[i + axes.Length];
                }

                return [new SymbolicValue(x.Type, shape)];
            })
            .Host(Pad)
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Resize", [10, 11, 13, 18, 19])
            .WithAttributes(
                Attribute.Int("antialias", 0, since: 18),
                Attribute.Ints("axes", since: 18),
                Attribute.String("coordinate_transformation_mode", "half_pixel", since: 11),
                Attribute.Float("cubic_coeff_a", -0.75f, since: 11),
                Attribute.Int("exclude_outside", 0, since: 11),
                Attribute.Float("extrapolation_value", 0.0f, since: 11),
                Attribute.String("keep_aspect_ratio_policy", "stretch", since: 18),
                Attribute.String("mode", "nearest"),
                Attribute.String("nearest_mode", "round_prefer_floor", since: 11))
            .HostInputs([1], since: 10, until: 10)
            .HostInputs([1, 2, 3], since: 11)
            .Shape(c => [ResizeShape(c)])
            .Host(c => [Resize(c)], eager: false)
            .Costs(OpCategory.DataMovement, CopyCost);

        yield return Define("Upsample", [1, 7, 9]).Removed(10)
            .WithAttributes(
                Attribute.Float("height_scale", required: true, until: 6),
                Attribute.String("mode", "nearest", until: 9),
                Attribute.Floats("scales", required: true, since: 7, until: 8),
                Attribute.Float("width_scale", required: true, until: 6))
            .HostInputs([1], since: 9)
            .Shape(c => [ResizeShape(c)])
            .Host(c => [Resize(c)], eager: false)
            .Costs(OpCategory.DataMovement, CopyCost);
    }

    // ---- helpers shared by the host implementations ----

    internal static HostTensor Empty(ElementType type, long[] shape) => type.IsFloatingPoint()
        ? HostTensor.OfFloats(type, shape, new double[TensorMath.Product(shape)])
        : HostTensor.OfInts(type, shape, new long[TensorMath.Product(shape)]);

    internal static void Copy(HostTensor from, long fromOffset, HostTensor to, long toOffset, long count)
    {
        if (from.IsFloat)
        {
            Array.Copy(from.Floats!, fromOffset, to.Floats!, toOffset, count);
        }
        else
        {
            Array.Copy(from.Ints!, fromOffset, to.Ints!, toOffset, count);
        }
    }

    /// <summary>A tensor of <paramref name="shape"/> whose element i is <paramref name="source"/>'s element at <paramref name="index"/>(i) (-1: zero).</summary>
    internal static HostTensor Build(HostTensor source, long[] shape, Func<long, long> index)
    {
        var n = TensorMath.Product(shape);
        if (source.IsFloat)
        {
            var f = new double[n];
            for (long i = 0; i < n; i++)
            {
                var k = index(i);
                f[i] = k < 0 ? 0 : source.Floats![k];
            }

            return HostTensor.OfFloats(source.Type, shape, f);
        }

        var v = new long[n];
        for (long i = 0; i < n; i++)
        {
            var k = index(i);
            v[i] = k < 0 ? 0 : source.Ints![k];
        }

        return HostTensor.OfInts(source.Type, shape, v);
    }

    // ---- Split ----

    private static SymbolicValue[] Split(InferenceContext c)
    {
        var x = c.In(0);
        var axis = c.Axis(c.Int("axis", 0), x.Shape.Length);
        var count = c.OutputCount;
        var sizes = c.Opset >= 13 ? c.ConstInts(1) : c.Ints("split");
        if (c.Opset >= 13 && c.Has(1) && sizes is null)
        {
            throw c.Fail("the split sizes are computed at run time; Batchwise needs them known from shapes");
        }

        var result = new SymbolicValue[count];
        if (sizes is not null)
        {
            if (sizes.Length != count)
            {
                throw c.Fail($"split has {sizes.Length} sizes for {count} outputs");
            }

            if (x.Shape[axis].IsConcrete && sizes.Sum() != x.Shape[axis].Value)
            {
                throw c.Fail($"split sizes add up to {sizes.Sum()}, not {x.Shape[axis]}");
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

            result[i] = new SymbolicValue(x.Type, shape);
        }

        return result;
    }

    // ---- Slice ----

    private static (long[]? Starts, long[]? Ends, long[]? Axes, long[]? Steps) SliceArguments(long opset, NodeAttributes a, Func<int, long[]?> input) =>
        opset < 10 ? (a.Ints("starts"), a.Ints("ends"), a.Ints("axes"), null) : (input(1), input(2), input(3), input(4));

    /// <summary>Per axis: output size, first index and step, with ONNX's clamping.</summary>
    internal static (long[] Shape, long[] First, long[] Step) SliceRanges(long[] shape, long[] starts, long[] ends, long[]? axes, long[]? steps, Func<string, Exception> fail)
    {
        var rank = shape.Length;
        var outShape = (long[])shape.Clone();
        var first = new long[rank];
        var step = Enumerable.Repeat(1L, rank).ToArray();
        for (var i = 0; i < starts.Length; i++)
        {
            var axis = TensorMath.Axis(axes?[i] ?? i, rank);
            var s = steps?[i] ?? 1;
            if (s == 0)
            {
                throw fail("a step is 0");
            }

            var (start, count) = SliceAxis(shape[axis], starts[i], ends[i], s);
            outShape[axis] = count;
            first[axis] = start;
            step[axis] = s;
        }

        return (outShape, first, step);
    }

    private static (long Start, long Count) SliceAxis(long size, long start, long end, long step)
    {
        start = start < 0 ? start + size : start;
        end = end < 0 ? end + size : end;
        if (step > 0)
        {
            start = Math.Clamp(start, 0, size);
            end = Math.Clamp(end, 0, size);
            return (start, end > start ? (end - start + step - 1) / step : 0);
        }

        start = Math.Clamp(start, -1, size - 1);
        end = Math.Clamp(end, -1, size - 1);
        return (start, start > end ? (start - end - step - 1) / -step : 0);
    }

    private static SymbolicValue[] Slice(InferenceContext c)
    {
        var x = c.In(0);
        var (starts, ends, axes, steps) = SliceArguments(c.Opset, c.Attributes, i => c.Has(i) ? c.RequireInts(i, i switch { 1 => "the starts", 2 => "the ends", 3 => "the axes", _ => "the steps" }) : null);
        if (starts is null || ends is null)
        {
            throw c.Fail("starts or ends is missing");
        }

        var shape = (DimExpr[])x.Shape.Clone();
        var ranges = new (long Start, long Step, long Count)?[shape.Length];
        for (var i = 0; i < starts.Length; i++)
        {
            var axis = c.Axis(axes?[i] ?? i, shape.Length);
            var step = steps?[i] ?? 1;
            if (step == 0)
            {
                throw c.Fail("a step is 0");
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

            var (start, count) = SliceAxis(d.Value, starts[i], ends[i], step);
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

        return [new SymbolicValue(x.Type, shape, data)];
    }

    // ---- Pad ----

    private static HostTensor[] Pad(EvaluationContext c)
    {
        var x = c.In(0);
        var rank = x.Shape.Length;
        var mode = c.String("mode");
        var pads = c.Opset >= 11 ? c.In(1).AsLongs() : c.Ints("pads")!;
        var value = c.Opset >= 11 ? (c.Optional(2) is { Count: > 0 } v ? v[0] : 0) : c.Float("value");
        var axes = c.Opset >= 18 && c.Optional(3) is { } a ? a.AsLongs().Select(x => c.Axis(x, rank)).ToArray() : [.. Enumerable.Range(0, rank)];
        var begin = new long[rank];
        foreach (var (axis, i) in axes.Select((axis, i) => (axis, i)))
        {
            begin[axis] = pads[i];
        }

        var shape = c.OutputShape(0);
        var outStrides = TensorMath.Strides(shape);
        var inStrides = TensorMath.Strides(x.Shape);
        var n = TensorMath.Product(shape);
        var result = Empty(x.Type, shape);
        for (long i = 0; i < n; i++)
        {
            long offset = 0;
            var outside = false;
            for (var d = 0; d < rank; d++)
            {
                var size = x.Shape[d];
                var k = (i / outStrides[d] % shape[d]) - begin[d];
                if (k < 0 || k >= size)
                {
                    switch (mode)
                    {
                        case "constant":
                            outside = true;
                            break;
                        case "edge":
                            k = Math.Clamp(k, 0, size - 1);
                            break;
                        case "wrap":
                            k = ((k % size) + size) % size;
                            break;
                        case "reflect":
                            var period = 2 * (size - 1);
                            k = size == 1 ? 0 : ((k % period) + period) % period;
                            k = k >= size ? period - k : k;
                            break;
                        default:
                            throw c.Fail($"pad mode '{mode}' is not one of constant, reflect, edge, wrap");
                    }
                }

                offset += k * inStrides[d];
            }

            if (x.IsFloat)
            {
                result.Floats![i] = outside ? HostTensor.Round(x.Type, value) : x.Floats![offset];
            }
            else
            {
                result.Ints![i] = outside ? (long)value : x.Ints![offset];
            }
        }

        return [result];
    }

    // ---- Resize and Upsample ----

    /// <summary>Scales (one per axis of the input) or sizes, as Resize's and Upsample's opsets give them.</summary>
    private static (double[]? Scales, long[]? Sizes, int[] Axes) ResizeTargets(string op, long opset, NodeAttributes a, int rank, Func<int, double[]?> floats, Func<int, long[]?> ints, Func<string, Exception> fail)
    {
        var all = Enumerable.Range(0, rank).ToArray();
        if (op == "Upsample")
        {
            return (opset >= 9 ? floats(1) : a.Floats("scales"), null, all);
        }

        if (opset < 11)
        {
            return (floats(1), null, all);
        }

        var axes = opset >= 18 && a.Ints("axes") is { } given ? [.. given.Select(x => TensorMath.Axis(x, rank))] : all;
        var sizes = ints(3);
        if (sizes is { Length: > 0 })
        {
            return (null, sizes, axes);
        }

        var scales = floats(2);
        return scales is { Length: > 0 } ? (scales, null, axes) : throw fail("neither scales nor sizes are given");
    }

    private static SymbolicValue ResizeShape(InferenceContext c)
    {
        var x = c.In(0);
        var rank = x.Shape.Length;
        if (c.OpType == "Resize" && c.Opset >= 11 && c.Has(3) && c.Dims(3) is { Length: > 0 } symbolicSizes
            && (c.Opset < 18 || c.String("keep_aspect_ratio_policy") == "stretch"))
        {
            var axesGiven = c.Opset >= 18 ? c.Ints("axes") : null;
            var shape = (DimExpr[])x.Shape.Clone();
            for (var i = 0; i < symbolicSizes.Length; i++)
            {
                shape[axesGiven is null ? i : c.Axis(axesGiven[i], rank)] = symbolicSizes[i];
            }

            return new SymbolicValue(x.Type, shape);
        }

        var (scales, sizes, axes) = ResizeTargets(c.OpType, c.Opset, c.Attributes, rank, c.ConstFloats, c.ConstInts, c.Fail);
        if (sizes is not null)
        {
            var concrete = x.Shape.All(d => d.IsConcrete) ? x.Shape.Select(d => d.Value).ToArray() : throw c.Fail("keep_aspect_ratio_policy needs concrete input dimensions");
            return SymbolicValue.OfShape(x.Type, ResizeOutput(concrete, null, sizes, axes, c.String("keep_aspect_ratio_policy"), null).Shape);
        }

        if (scales!.Length != axes.Length)
        {
            throw c.Fail($"{scales.Length} scales for {axes.Length} axes");
        }

        var roi = c.OpType == "Resize" && c.Opset >= 11 && c.String("coordinate_transformation_mode") == "tf_crop_and_resize" ? c.ConstFloats(1) : null;
        var result = (DimExpr[])x.Shape.Clone();
        for (var i = 0; i < axes.Length; i++)
        {
            var d = x.Shape[axes[i]];
            var s = scales[i] * (roi is null ? 1 : roi[axes.Length + i] - roi[i]);
            result[axes[i]] = s == 1 ? d
                : d.IsConcrete ? DimExpr.Of((long)Math.Floor(d.Value * s))
                : s == Math.Round(s) ? d * DimExpr.Of((long)s)
                : DimExpr.Symbol($"({d}*{s})");
        }

        return new SymbolicValue(x.Type, result);
    }

    /// <summary>Output shape and the per-axis scale used for coordinates.</summary>
    private static (long[] Shape, double[] Scales) ResizeOutput(long[] input, double[]? scales, long[]? sizes, int[] axes, string policy, double[]? roi)
    {
        var shape = (long[])input.Clone();
        var perAxis = Enumerable.Repeat(1.0, input.Length).ToArray();
        if (sizes is not null)
        {
            if (policy is "not_larger" or "not_smaller")
            {
                var ratios = axes.Select((a, i) => (double)sizes[i] / input[a]).ToArray();
                var s = policy == "not_larger" ? ratios.Min() : ratios.Max();
                foreach (var a in axes)
                {
                    shape[a] = (long)Math.Round((s * input[a]) + 1e-12, MidpointRounding.AwayFromZero);
                    perAxis[a] = s;
                }
            }
            else
            {
                for (var i = 0; i < axes.Length; i++)
                {
                    shape[axes[i]] = sizes[i];
                    perAxis[axes[i]] = (double)sizes[i] / input[axes[i]];
                }
            }
        }
        else
        {
            for (var i = 0; i < axes.Length; i++)
            {
                var crop = roi is null ? 1 : roi[axes.Length + i] - roi[i];
                shape[axes[i]] = (long)Math.Floor(input[axes[i]] * scales![i] * crop);
                perAxis[axes[i]] = scales[i];
            }
        }

        return (shape, perAxis);
    }

    private static HostTensor Resize(EvaluationContext c)
    {
        var x = c.In(0);
        var rank = x.Shape.Length;
        var isResize11 = c.OpType == "Resize" && c.Opset >= 11;
        if (isResize11 && c.Opset >= 18 && c.Int("antialias") != 0)
        {
            throw c.Fail("antialias is not implemented on the host");
        }

        var (scales, sizes, axes) = ResizeTargets(c.OpType, c.Opset, c.Attributes, rank, i => c.Optional(i)?.AsDoubles(), i => c.Optional(i)?.AsLongs(), c.Fail);
        var mode = c.String("mode");
        var coordinates = isResize11 ? c.String("coordinate_transformation_mode") : "asymmetric";
        var nearest = isResize11 ? c.String("nearest_mode") : "floor";
        var roiValues = coordinates == "tf_crop_and_resize" ? c.Optional(1)?.AsDoubles() ?? throw c.Fail("tf_crop_and_resize needs roi") : null;
        var (shape, axisScales) = ResizeOutput(x.Shape, scales, sizes, axes, c.Opset >= 18 && isResize11 ? c.String("keep_aspect_ratio_policy") : "stretch", roiValues);
        var roi = new double[2 * rank];
        for (var d = 0; d < rank; d++)
        {
            roi[rank + d] = 1;
        }

        if (roiValues is not null)
        {
            for (var i = 0; i < axes.Length; i++)
            {
                roi[axes[i]] = roiValues[i];
                roi[rank + axes[i]] = roiValues[axes.Length + i];
            }
        }

        var cubicA = isResize11 ? c.Float("cubic_coeff_a") : -0.75;
        var excludeOutside = isResize11 && c.Int("exclude_outside") != 0;
        var extrapolation = isResize11 ? c.Float("extrapolation_value") : 0;

        // Per axis and output index: the input indices and weights (separable interpolation), or null when outside (tf_crop_and_resize).
        var taps = new (long Index, double Weight)[]?[rank][];
        for (var d = 0; d < rank; d++)
        {
            taps[d] = new (long, double)[]?[shape[d]];
            for (long o = 0; o < shape[d]; o++)
            {
                taps[d][o] = shape[d] == x.Shape[d] && axisScales[d] == 1 && roiValues is null
                    ? [(o, 1.0)]
                    : Taps(o, x.Shape[d], shape[d], axisScales[d], roi[d], roi[rank + d], mode, coordinates, nearest, cubicA, excludeOutside);
            }
        }

        var inStrides = TensorMath.Strides(x.Shape);
        var outStrides = TensorMath.Strides(shape);
        var result = new double[TensorMath.Product(shape)];
        var position = new int[rank];
        for (long i = 0; i < result.Length; i++)
        {
            var axisTaps = new (long Index, double Weight)[rank][];
            var outside = false;
            for (var d = 0; d < rank; d++)
            {
                var t = taps[d][i / outStrides[d] % shape[d]];
                if (t is null)
                {
                    outside = true;
                    break;
                }

                axisTaps[d] = t;
            }

            if (outside)
            {
                result[i] = extrapolation;
                continue;
            }

            // Sum over the cartesian product of the taps of every axis.
            Array.Clear(position);
            double sum = 0;
            while (true)
            {
                long offset = 0;
                var weight = 1.0;
                for (var d = 0; d < rank; d++)
                {
                    var (index, w) = axisTaps[d][position[d]];
                    offset += index * inStrides[d];
                    weight *= w;
                }

                if (weight != 0)
                {
                    sum += weight * x[offset];
                }

                var k = rank - 1;
                while (k >= 0 && ++position[k] == axisTaps[k].Length)
                {
                    position[k--] = 0;
                }

                if (k < 0)
                {
                    break;
                }
            }

            result[i] = sum;
        }

        return x.IsFloat
            ? HostTensor.OfFloats(x.Type, shape, [.. result.Select(v => HostTensor.Round(x.Type, v))])
            : HostTensor.OfInts(x.Type, shape, [.. result.Select(v => HostTensor.Wrap(x.Type, (long)Math.Round(v, MidpointRounding.ToEven)))]);
    }

    /// <summary>The input taps of one output index along one axis (ONNX's reference resize, 1-D).</summary>
    private static (long, double)[]? Taps(long o, long inSize, long outSize, double scale, double roiStart, double roiEnd, string mode, string coordinates, string nearest, double cubicA, bool excludeOutside)
    {
        var outWidth = scale * inSize;
        double x = coordinates switch
        {
            "align_corners" => outWidth == 1 ? 0 : o * (inSize - 1) / (outWidth - 1),
            "asymmetric" => o / scale,
            "tf_crop_and_resize" => (outWidth == 1 ? (roiEnd - roiStart) * (inSize - 1) / 2 : o * (roiEnd - roiStart) * (inSize - 1) / (outWidth - 1)) + (roiStart * (inSize - 1)),
            "pytorch_half_pixel" => outWidth == 1 ? -0.5 : ((o + 0.5) / scale) - 0.5,
            "half_pixel" => ((o + 0.5) / scale) - 0.5,
            "half_pixel_symmetric" => (inSize / 2.0 * (1 - (outSize / outWidth))) + ((o + 0.5) / scale) - 0.5,
            "tf_half_pixel_for_nn" => (o + 0.5) / scale,
            _ => throw new BatchwiseException($"coordinate_transformation_mode '{coordinates}' is not one ONNX defines", "Use half_pixel, align_corners, asymmetric, pytorch_half_pixel or tf_crop_and_resize."),
        };
        if (coordinates == "tf_crop_and_resize" && (x < 0 || x > inSize - 1))
        {
            return null;
        }

        var left = (long)Math.Ceiling(x) - 1; // the neighbour at or left of x; the ratio is in (0, 1]
        var ratio = x - left;
        double[] weights;
        long firstTap;
        switch (mode)
        {
            case "nearest":
                var isInteger = x == Math.Floor(x);
                var right = isInteger || nearest switch
                {
                    "round_prefer_floor" => ratio > 0.5,
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => false,
                    "ceil" => true,
                    _ => throw new BatchwiseException($"nearest_mode '{nearest}' is not one ONNX defines", "Use round_prefer_floor, round_prefer_ceil, floor or ceil."),
                };
                return [(Math.Clamp(right ? left + 1 : left, 0, inSize - 1), 1.0)];
            case "linear" or "bilinear":
                (firstTap, weights) = (left, [1 - ratio, ratio]);
                break;
            case "cubic" or "bicubic":
                {
                    var a = cubicA;
                    var r = ratio;
                    weights =
                    [
                        ((((a * (r + 1)) - (5 * a)) * (r + 1)) + (8 * a)) * (r + 1) - (4 * a),
                        ((((a + 2) * r) - (a + 3)) * r * r) + 1,
                        ((((a + 2) * (1 - r)) - (a + 3)) * (1 - r) * (1 - r)) + 1,
                        ((((a * (2 - r)) - (5 * a)) * (2 - r)) + (8 * a)) * (2 - r) - (4 * a),
                    ];
                    firstTap = left - 1;
                    break;
                }

            default:
                throw new BatchwiseException($"resize mode '{mode}' is not one ONNX defines", "Use nearest, linear or cubic.");
        }

        if (excludeOutside)
        {
            for (var k = 0; k < weights.Length; k++)
            {
                if (firstTap + k < 0 || firstTap + k >= inSize)
                {
                    weights[k] = 0;
                }
            }

            var total = weights.Sum();
            for (var k = 0; k < weights.Length; k++)
            {
                weights[k] /= total;
            }
        }

        return [.. weights.Select((w, k) => (Math.Clamp(firstTap + k, 0, inSize - 1), w))];
    }
}
