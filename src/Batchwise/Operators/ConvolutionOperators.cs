using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>Convolutions and pooling: Conv (implicit GEMM), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.</summary>
internal static class ConvolutionOperators
{
    internal static readonly AttributeSpec[] ConvAttributes =
    [
        Attribute.String("auto_pad", "NOTSET"),
        Attribute.Ints("dilations"),
        Attribute.Int("group", 1),
        Attribute.Ints("kernel_shape"),
        Attribute.Ints("pads"),
        Attribute.Ints("strides"),
    ];

    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("Conv", [1, 11, 22])
            .WithAttributes(ConvAttributes)
            .Shape(c => [ConvShape(c)])
            .Host(c => [Conv(c, c.In(0), c.In(1), c.Optional(2), c.In(0).Type)], eager: false)
            .Costs(OpCategory.Gemm, ConvCost);

        yield return Define("ConvTranspose", [1, 11, 22])
            .WithAttributes([.. ConvAttributes, Attribute.Ints("output_padding"), Attribute.Ints("output_shape")])
            .Shape(c =>
            {
                var (x, w) = (c.In(0), c.In(1));
                if (x.Shape.Length < 3 || w.Shape.Length != x.Shape.Length)
                {
                    throw c.Fail($"input rank {x.Shape.Length} and weight rank {w.Shape.Length} do not make a transposed convolution");
                }

                var n = x.Shape.Length - 2;
                var kernel = c.Ints("kernel_shape") ?? [.. w.Shape.Skip(2).Select(d => d.IsConcrete ? d.Value : throw c.Fail("the kernel size is symbolic"))];
                DimExpr[] spatial;
                if (x.Shape.Skip(2).All(d => d.IsConcrete))
                {
                    spatial = [.. TransposedGeometry(c.Attributes, [.. x.Shape.Skip(2).Select(d => d.Value)], kernel).Output.Select(DimExpr.Of)];
                }
                else
                {
                    var strides = c.Ints("strides") ?? [.. Enumerable.Repeat(1L, n)];
                    spatial = [.. x.Shape.Skip(2).Select((d, i) => strides[i] == 1 && kernel[i] == 1 && c.Ints("pads") is null ? d : DimExpr.Symbol($"(convtranspose({d}))"))];
                }

                return [new SymbolicValue(x.Type, [x.Shape[0], w.Shape[1] * DimExpr.Of(c.Int("group")), .. spatial])];
            })
            .Host(ConvTranspose, eager: false)
            .Costs(OpCategory.Gemm, c =>
            {
                var (x, w) = (c.InputShape(0), c.InputShape(1));
                var groups = c.Attributes.Int("group", 1);
                var gemm = new GemmShape(M: w[1] * groups, N: x[0] * CostContext.Count(x.Skip(2)), K: w[0] / groups * CostContext.Count(w.Skip(2)), Groups: groups);
                return new OperatorWork((2 * gemm.Macs) + (c.Has(2) ? c.OutputElements : 0), gemm);
            });

        yield return Define("MaxPool", [1, 8, 10, 11, 12, 22])
            .WithAttributes(
                Attribute.String("auto_pad", "NOTSET"),
                Attribute.Int("ceil_mode", 0, since: 10),
                Attribute.Ints("dilations", since: 10),
                Attribute.Ints("kernel_shape", required: true),
                Attribute.Ints("pads"),
                Attribute.Int("storage_order", 0, since: 8),
                Attribute.Ints("strides"))
            .Shape(PoolShape)
            .Host(c => Pool(c, max: true), eager: false)
            .Costs(OpCategory.Pooling, PoolCost);

        yield return Define("AveragePool", [1, 7, 10, 11, 19, 22])
            .WithAttributes(
                Attribute.String("auto_pad", "NOTSET"),
                Attribute.Int("ceil_mode", 0, since: 10),
                Attribute.Int("count_include_pad", 0, since: 7),
                Attribute.Ints("dilations", since: 19),
                Attribute.Ints("kernel_shape", required: true),
                Attribute.Ints("pads"),
                Attribute.Ints("strides"))
            .Shape(PoolShape)
            .Host(c => Pool(c, max: false), eager: false)
            .Costs(OpCategory.Pooling, PoolCost);

        yield return Define("GlobalAveragePool", [1, 22])
            .Shape(GlobalPoolShape)
            .Host(c => [GlobalPool(c.In(0), c.OutputShape(0), max: false)], eager: false)
            .Costs(OpCategory.Pooling, c => new OperatorWork(c.InputElements(0)));

        yield return Define("GlobalMaxPool", [1, 22])
            .Shape(GlobalPoolShape)
            .Host(c => [GlobalPool(c.In(0), c.OutputShape(0), max: true)], eager: false)
            .Costs(OpCategory.Pooling, c => new OperatorWork(c.InputElements(0)));
    }

    // ---- shapes ----

    internal static SymbolicValue ConvShape(InferenceContext c, ElementType? outputType = null)
    {
        var x = c.In(0);
        var w = c.In(c.OpType == "QLinearConv" ? 3 : 1);
        if (x.Shape.Length < 3 || w.Shape.Length != x.Shape.Length)
        {
            throw c.Fail($"input rank {x.Shape.Length} and weight rank {w.Shape.Length} do not make a convolution");
        }

        var group = c.Int("group");
        if (x.Shape[1].IsConcrete && w.Shape[1].IsConcrete && x.Shape[1].Value != w.Shape[1].Value * group)
        {
            throw c.Fail($"input has {x.Shape[1]} channels but the weight expects {w.Shape[1].Value * group} ({w.Shape[1]} x group {group})");
        }

        var kernel = c.Ints("kernel_shape") ?? [.. w.Shape.Skip(2).Select(d => d.IsConcrete ? d.Value : throw c.Fail("the kernel size is symbolic"))];
        return new SymbolicValue(outputType ?? x.Type, [x.Shape[0], w.Shape[0], .. Spatial(c, x.Shape, kernel, ceil: false)]);
    }

    private static SymbolicValue[] PoolShape(InferenceContext c)
    {
        var x = c.In(0);
        var kernel = c.Ints("kernel_shape") ?? throw c.Fail("kernel_shape is missing");
        DimExpr[] shape = [x.Shape[0], x.Shape[1], .. Spatial(c, x.Shape, kernel, ceil: c.Opset >= 10 && c.Int("ceil_mode") != 0)];
        return [new SymbolicValue(x.Type, shape), new SymbolicValue(ElementType.Int64, shape)];
    }

    private static SymbolicValue[] GlobalPoolShape(InferenceContext c)
    {
        var x = c.In(0);
        return [new SymbolicValue(x.Type, [.. x.Shape.Take(2), .. x.Shape.Skip(2).Select(_ => DimExpr.Of(1))])];
    }

    /// <summary>Output spatial dimensions of a convolution or pooling window.</summary>
    internal static DimExpr[] Spatial(InferenceContext c, DimExpr[] input, long[] kernel, bool ceil)
    {
        var n = input.Length - 2;
        if (kernel.Length != n)
        {
            throw c.Fail($"kernel_shape has {kernel.Length} dimensions for {n} spatial dimensions");
        }

        var strides = c.Ints("strides") ?? [.. Enumerable.Repeat(1L, n)];
        var dilations = (c.HasAttribute("dilations") ? c.Ints("dilations") : null) ?? [.. Enumerable.Repeat(1L, n)];
        var pads = c.Ints("pads") ?? new long[2 * n];
        var autoPad = c.String("auto_pad");
        var result = new DimExpr[n];
        for (var i = 0; i < n; i++)
        {
            var d = input[i + 2];
            var dk = (dilations[i] * (kernel[i] - 1)) + 1;
            if (!d.IsConcrete)
            {
                result[i] = strides[i] == 1 && (autoPad.StartsWith("SAME", StringComparison.Ordinal) || pads[i] + pads[i + n] == dk - 1)
                    ? d
                    : DimExpr.Symbol($"({c.OpType.ToLowerInvariant()}({d}))");
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
                    outSize = ceil ? ((size - dk) / s) + 1 + ((size - dk) % s == 0 ? 0 : 1) : ((size - dk) / s) + 1;
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
                throw c.Fail($"spatial dimension {i} of size {size} is smaller than the kernel ({kernel[i]}); the input is too small");
            }

            result[i] = DimExpr.Of(outSize);
        }

        return result;
    }

    /// <summary>Begin padding per spatial axis (auto_pad resolved), for the host implementations.</summary>
    internal static long[] BeginPads(NodeAttributes a, long[] inSpatial, long[] outSpatial, long[] kernel, long[] strides, long[] dilations)
    {
        var n = inSpatial.Length;
        var autoPad = a.String("auto_pad", "NOTSET");
        var pads = a.Ints("pads") ?? new long[2 * n];
        var begin = new long[n];
        for (var d = 0; d < n; d++)
        {
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                var total = Math.Max(0, ((outSpatial[d] - 1) * strides[d]) + ((kernel[d] - 1) * dilations[d]) + 1 - inSpatial[d]);
                begin[d] = autoPad == "SAME_UPPER" ? total / 2 : total - (total / 2);
            }
            else if (autoPad == "NOTSET")
            {
                begin[d] = pads[d];
            }
        }

        return begin;
    }

    // ---- host implementations ----

    /// <summary>A direct convolution in doubles (small tensors only; folding and reference checks).</summary>
    internal static HostTensor Conv(EvaluationContext c, HostTensor x, HostTensor w, HostTensor? bias, ElementType outType, Func<long, double>? xValue = null, Func<long, double>? wValue = null)
    {
        var outShape = c.OutputShape(0);
        var n = x.Shape.Length - 2;
        var group = c.Int("group");
        var kernel = w.Shape[2..];
        var strides = c.Ints("strides") ?? [.. Enumerable.Repeat(1L, n)];
        var dilations = c.Ints("dilations") ?? [.. Enumerable.Repeat(1L, n)];
        var inSpatial = x.Shape[2..];
        var outSpatial = outShape[2..];
        var begin = BeginPads(c.Attributes, inSpatial, outSpatial, kernel, strides, dilations);
        var (batch, outChannels) = (x.Shape[0], w.Shape[0]);
        var perGroupIn = w.Shape[1];
        var perGroupOut = outChannels / group;
        var inStrides = TensorMath.Strides(x.Shape);
        var wStrides = TensorMath.Strides(w.Shape);
        var outCount = TensorMath.Product(outSpatial);
        var kernelCount = TensorMath.Product(kernel);
        xValue ??= i => x[i];
        wValue ??= i => w[i];
        var result = new double[TensorMath.Product(outShape)];
        var position = new long[n];
        var tap = new long[n];
        for (long b = 0; b < batch; b++)
        {
            for (long oc = 0; oc < outChannels; oc++)
            {
                var g = oc / perGroupOut;
                for (long o = 0; o < outCount; o++)
                {
                    Unravel(o, outSpatial, position);
                    var sum = bias is null ? 0.0 : bias[oc];
                    for (long ic = 0; ic < perGroupIn; ic++)
                    {
                        var inChannel = (g * perGroupIn) + ic;
                        for (long k = 0; k < kernelCount; k++)
                        {
                            Unravel(k, kernel, tap);
                            long xOffset = (b * inStrides[0]) + (inChannel * inStrides[1]);
                            var inside = true;
                            for (var d = 0; d < n && inside; d++)
                            {
                                var p = (position[d] * strides[d]) - begin[d] + (tap[d] * dilations[d]);
                                inside = p >= 0 && p < inSpatial[d];
                                xOffset += p * inStrides[d + 2];
                            }

                            if (inside)
                            {
                                var wOffset = (oc * wStrides[0]) + (ic * wStrides[1]) + Dot(tap, wStrides[2..]);
                                sum += xValue(xOffset) * wValue(wOffset);
                            }
                        }
                    }

                    result[(((b * outChannels) + oc) * outCount) + o] = sum;
                }
            }
        }

        return outType.IsFloatingPoint()
            ? HostTensor.OfFloats(outType, outShape, [.. result.Select(v => HostTensor.Round(outType, v))])
            : HostTensor.OfInts(outType, outShape, [.. result.Select(v => HostTensor.Wrap(outType, (long)v))]);
    }

    /// <summary>A transposed convolution's output size and begin padding per spatial axis: <see cref="ConvolutionGeometry.Transposed"/>.</summary>
    internal static (long[] Output, long[] Begin) TransposedGeometry(NodeAttributes a, long[] input, long[] kernel) => ConvolutionGeometry.Transposed(a, input, kernel);

    private static HostTensor[] ConvTranspose(EvaluationContext c)
    {
        var (x, w, bias) = (c.In(0), c.In(1), c.Optional(2));
        var n = x.Shape.Length - 2;
        var kernel = c.Ints("kernel_shape") ?? w.Shape[2..];
        var strides = c.Ints("strides") ?? [.. Enumerable.Repeat(1L, n)];
        var dilations = c.Ints("dilations") ?? [.. Enumerable.Repeat(1L, n)];
        var (outSpatial, begin) = TransposedGeometry(c.Attributes, x.Shape[2..], kernel);
        var group = c.Int("group");
        var (batch, inChannels) = (x.Shape[0], x.Shape[1]);
        var perGroupIn = inChannels / group;
        var perGroupOut = w.Shape[1];
        var outChannels = perGroupOut * group;
        var inSpatial = x.Shape[2..];
        var inCount = TensorMath.Product(inSpatial);
        var outCount = TensorMath.Product(outSpatial);
        var kernelCount = TensorMath.Product(kernel);
        var outStrides = TensorMath.Strides(outSpatial);
        var result = new double[batch * outChannels * outCount];
        var position = new long[n];
        var tap = new long[n];
        for (long b = 0; b < batch; b++)
        {
            for (long ic = 0; ic < inChannels; ic++)
            {
                var g = ic / perGroupIn;
                for (long p = 0; p < inCount; p++)
                {
                    Unravel(p, inSpatial, position);
                    var v = x[(((b * inChannels) + ic) * inCount) + p];
                    for (long k = 0; k < kernelCount; k++)
                    {
                        Unravel(k, kernel, tap);
                        long offset = 0;
                        var inside = true;
                        for (var d = 0; d < n && inside; d++)
                        {
                            var o = (position[d] * strides[d]) + (tap[d] * dilations[d]) - begin[d];
                            inside = o >= 0 && o < outSpatial[d];
                            offset += o * outStrides[d];
                        }

                        if (!inside)
                        {
                            continue;
                        }

                        for (long oc = 0; oc < perGroupOut; oc++)
                        {
                            var channel = (g * perGroupOut) + oc;
                            result[(((b * outChannels) + channel) * outCount) + offset] += v * w[(((ic * perGroupOut) + oc) * kernelCount) + k];
                        }
                    }
                }
            }
        }

        return [HostTensor.Create(x.Type, c.OutputShape(0), i => result[i] + (bias is null ? 0 : bias[i / outCount % outChannels]))];
    }

    private static HostTensor[] Pool(EvaluationContext c, bool max)
    {
        var x = c.In(0);
        var outShape = c.OutputShape(0);
        var n = x.Shape.Length - 2;
        var kernel = c.Ints("kernel_shape")!;
        var strides = c.Ints("strides") ?? [.. Enumerable.Repeat(1L, n)];
        var dilations = (c.Attributes.Has("dilations") ? c.Ints("dilations") : null) ?? [.. Enumerable.Repeat(1L, n)];
        var inSpatial = x.Shape[2..];
        var outSpatial = outShape[2..];
        var begin = BeginPads(c.Attributes, inSpatial, outSpatial, kernel, strides, dilations);
        var pads = c.Attributes.Ints("pads") ?? new long[2 * n];
        var includePad = !max && c.Opset >= 7 && c.Int("count_include_pad") != 0;
        var storageOrder = max && c.Opset >= 8 ? c.Int("storage_order") : 0;
        var planes = x.Shape[0] * x.Shape[1];
        var inCount = TensorMath.Product(inSpatial);
        var outCount = TensorMath.Product(outSpatial);
        var kernelCount = TensorMath.Product(kernel);
        var inStrides = TensorMath.Strides(inSpatial);
        var values = new double[planes * outCount];
        var indices = new long[planes * outCount];
        var position = new long[n];
        var tap = new long[n];
        for (long p = 0; p < planes; p++)
        {
            for (long o = 0; o < outCount; o++)
            {
                Unravel(o, outSpatial, position);
                var best = double.NegativeInfinity;
                long bestIndex = -1;
                double sum = 0;
                long count = 0;
                for (long k = 0; k < kernelCount; k++)
                {
                    Unravel(k, kernel, tap);
                    long offset = 0;
                    var inside = true;
                    var inPadding = true;
                    for (var d = 0; d < n; d++)
                    {
                        var q = (position[d] * strides[d]) - begin[d] + (tap[d] * dilations[d]);
                        inside &= q >= 0 && q < inSpatial[d];
                        inPadding &= q >= -begin[d] && q < inSpatial[d] + (pads.Length == 2 * n ? pads[d + n] : 0);
                        offset += q * inStrides[d];
                    }

                    if (inside)
                    {
                        var v = x[(p * inCount) + offset];
                        if (v > best || bestIndex < 0)
                        {
                            (best, bestIndex) = (v, offset);
                        }

                        sum += v;
                        count++;
                    }
                    else if (includePad && inPadding)
                    {
                        count++;
                    }
                }

                values[(p * outCount) + o] = max ? best : count == 0 ? 0 : sum / count;
                indices[(p * outCount) + o] = (p * inCount) + (storageOrder == 0 ? bestIndex : ColumnMajor(bestIndex, inSpatial));
            }
        }

        var y = HostTensor.Create(x.Type, outShape, i => values[i]);
        return c.HasOutput(1) ? [y, HostTensor.OfInts(ElementType.Int64, outShape, indices)] : [y];
    }

    private static long ColumnMajor(long rowMajor, long[] shape)
    {
        var position = new long[shape.Length];
        Unravel(rowMajor, shape, position);
        long index = 0, stride = 1;
        for (var d = 0; d < shape.Length; d++)
        {
            index += position[d] * stride;
            stride *= shape[d];
        }

        return index;
    }

    private static HostTensor GlobalPool(HostTensor x, long[] outShape, bool max)
    {
        var planes = x.Shape[0] * x.Shape[1];
        var size = TensorMath.Product(x.Shape.Skip(2));
        return HostTensor.Create(x.Type, outShape, p =>
        {
            var values = Enumerable.Range(0, (int)size).Select(i => x[(p * size) + i]);
            return max ? values.Max() : values.Average();
        });
    }

    internal static void Unravel(long index, long[] shape, long[] position)
    {
        for (var d = shape.Length - 1; d >= 0; d--)
        {
            position[d] = index % shape[d];
            index /= shape[d];
        }
    }

    private static long Dot(long[] a, long[] b)
    {
        long s = 0;
        for (var i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }

        return s;
    }

    // ---- costs ----

    internal static OperatorWork ConvCost(CostContext c)
    {
        var wIndex = c.Node.OpType == "QLinearConv" ? 3 : 1;
        var w = c.InputShape(wIndex);
        var y = c.OutputShape(0);
        var groups = c.Attributes.Int("group", 1);
        var gemm = new GemmShape(M: w[0], N: y[0] * CostContext.Count(y.Skip(2)), K: CostContext.Count(w.Skip(1)), Groups: groups);
        var hasBias = c.Node.OpType == "QLinearConv" ? c.Has(8) : c.Has(2);
        return new OperatorWork((2 * gemm.Macs) + (hasBias ? c.OutputElements : 0), gemm);
    }

    private static OperatorWork PoolCost(CostContext c) =>
        new(c.OutputElements * CostContext.Count(c.Attributes.Ints("kernel_shape") ?? [1]));
}
