using Batchwise.Onnx;

namespace Batchwise.Operators;

/// <summary>Index arithmetic for the host implementations: strides, numpy broadcasting, axes.</summary>
internal static class TensorMath
{
    public static long Product(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => checked(a * b));

    /// <summary>Row-major strides of a shape.</summary>
    public static long[] Strides(long[] shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (var d = shape.Length - 1; d >= 0; d--)
        {
            strides[d] = s;
            s *= shape[d];
        }

        return strides;
    }

    /// <summary>Numpy broadcasting of several shapes; throws when they do not broadcast.</summary>
    public static long[] Broadcast(params long[][] shapes)
    {
        var rank = shapes.Max(s => s.Length);
        var result = new long[rank];
        for (var d = 0; d < rank; d++)
        {
            long dim = 1;
            foreach (var s in shapes)
            {
                var k = d - (rank - s.Length);
                if (k < 0 || s[k] == dim || s[k] == 1)
                {
                    continue;
                }

                if (dim != 1)
                {
                    throw new BatchwiseException($"shapes {string.Join(" and ", shapes.Select(Engines.Tensor.ShapeText))} do not broadcast", "Check the model's shapes.");
                }

                dim = s[k];
            }

            result[d] = dim;
        }

        return result;
    }

    /// <summary>Strides that read an input of <paramref name="inShape"/> broadcast to <paramref name="outShape"/> (0 along broadcast dimensions).</summary>
    public static long[] BroadcastStrides(long[] inShape, long[] outShape)
    {
        var aligned = Enumerable.Repeat(1L, outShape.Length - inShape.Length).Concat(inShape).ToArray();
        var strides = Strides(aligned);
        for (var d = 0; d < aligned.Length; d++)
        {
            if (aligned[d] == 1 && outShape[d] != 1)
            {
                strides[d] = 0;
            }
        }

        return strides;
    }

    /// <summary>Calls <paramref name="body"/> for every output position of <paramref name="outShape"/> with each input's offset.</summary>
    public static void ForEach(long[] outShape, long[][] inputStrides, Action<long, long[]> body)
    {
        var rank = outShape.Length;
        var n = Product(outShape);
        var index = new long[rank];
        var offsets = new long[inputStrides.Length];
        for (long i = 0; i < n; i++)
        {
            body(i, offsets);
            for (var d = rank - 1; d >= 0; d--)
            {
                index[d]++;
                for (var k = 0; k < offsets.Length; k++)
                {
                    offsets[k] += inputStrides[k][d];
                }

                if (index[d] < outShape[d])
                {
                    break;
                }

                for (var k = 0; k < offsets.Length; k++)
                {
                    offsets[k] -= inputStrides[k][d] * outShape[d];
                }

                index[d] = 0;
            }
        }
    }

    /// <summary>Reads <paramref name="source"/> through strides into a new tensor of <paramref name="shape"/> (views: slices, transposes, broadcasts).</summary>
    public static HostTensor Gather(HostTensor source, long[] shape, long[] strides, long start = 0)
    {
        var n = Product(shape);
        if (source.IsFloat)
        {
            var f = new double[n];
            ForEach(shape, [strides], (i, o) => f[i] = source.Floats![start + o[0]]);
            return HostTensor.OfFloats(source.Type, shape, f);
        }

        var v = new long[n];
        ForEach(shape, [strides], (i, o) => v[i] = source.Ints![start + o[0]]);
        return HostTensor.OfInts(source.Type, shape, v);
    }

    /// <summary>Elementwise over broadcast inputs in doubles; the result is rounded or wrapped to <paramref name="outType"/>.</summary>
    public static HostTensor Map(HostTensor[] inputs, ElementType outType, Func<double[], double> f)
    {
        var shape = Broadcast([.. inputs.Select(t => t.Shape)]);
        var strides = inputs.Select(t => BroadcastStrides(t.Shape, shape)).ToArray();
        var args = new double[inputs.Length];
        var result = new double[Product(shape)];
        ForEach(shape, strides, (i, o) =>
        {
            for (var k = 0; k < args.Length; k++)
            {
                args[k] = inputs[k][o[k]];
            }

            result[i] = f(args);
        });
        return outType.IsFloatingPoint()
            ? HostTensor.OfFloats(outType, shape, [.. result.Select(v => HostTensor.Round(outType, v))])
            : HostTensor.OfInts(outType, shape, [.. result.Select(v => HostTensor.Wrap(outType, HostTensor.ToInteger(v)))]);
    }

    /// <summary>Elementwise over broadcast integer inputs, exact in longs (int64 extremes such as Slice's INT64_MAX survive).</summary>
    public static HostTensor MapInts(HostTensor[] inputs, ElementType outType, Func<long[], long> f)
    {
        var shape = Broadcast([.. inputs.Select(t => t.Shape)]);
        var strides = inputs.Select(t => BroadcastStrides(t.Shape, shape)).ToArray();
        var args = new long[inputs.Length];
        var result = new long[Product(shape)];
        ForEach(shape, strides, (i, o) =>
        {
            for (var k = 0; k < args.Length; k++)
            {
                args[k] = inputs[k].Int(o[k]);
            }

            result[i] = HostTensor.Wrap(outType, f(args));
        });
        return HostTensor.OfInts(outType, shape, result);
    }

    /// <summary>Normalises an axis against a rank (negative counts from the back).</summary>
    public static int Axis(long axis, int rank) => axis < -rank || axis >= Math.Max(rank, 1)
        ? throw new BatchwiseException($"axis {axis} is out of range for rank {rank}", "Check the model.")
        : (int)(axis < 0 ? axis + rank : axis);
}
