namespace Batchwise.Cuda.Planning;

/// <summary>Shape arithmetic shared by host folding and device lowering (numpy broadcasting, axes, slices).</summary>
internal static class Shapes
{
    /// <summary>Numpy broadcasting of several shapes (the host implementations' rule); throws when they do not broadcast.</summary>
    public static long[] Broadcast(params long[][] shapes) => Batchwise.Operators.TensorMath.Broadcast(shapes);

    /// <summary>Prepends 1s to reach a rank.</summary>
    public static long[] RightAlign(long[] shape, int rank) => Enumerable.Repeat(1L, rank - shape.Length).Concat(shape).ToArray();

    public static int Axis(long axis, int rank)
    {
        var a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= Math.Max(rank, 1))
        {
            throw new BatchwiseException($"axis {axis} is out of range for rank {rank}", "Check the model.");
        }

        return (int)a;
    }

    public static long Product(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => a * b);

    /// <summary>Strides of an input broadcast to an output shape (0 along broadcast dimensions).</summary>
    public static long[] BroadcastStrides(long[] inShape, long[] outShape) => Batchwise.Operators.TensorMath.BroadcastStrides(inShape, outShape);

    /// <summary>Reshape's target shape: 0 copies the input dimension (unless allowzero), -1 is inferred.</summary>
    public static long[] ReshapeTarget(long[] input, long[] target, bool allowZero)
    {
        var shape = (long[])target.Clone();
        var unknown = -1;
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 0 && !allowZero)
            {
                shape[i] = input[i];
            }
            else if (shape[i] == -1)
            {
                unknown = i;
            }
        }

        if (unknown >= 0)
        {
            var known = Product(shape.Where((_, i) => i != unknown));
            shape[unknown] = known == 0 ? 0 : Product(input) / known;
        }

        return shape;
    }

    public static long[] Unsqueeze(long[] shape, long[] axes)
    {
        var rank = shape.Length + axes.Length;
        var norm = axes.Select(a => Axis(a, rank)).ToHashSet();
        var result = new long[rank];
        var k = 0;
        for (var d = 0; d < rank; d++)
        {
            result[d] = norm.Contains(d) ? 1 : shape[k++];
        }

        return result;
    }

    public static long[] Squeeze(long[] shape, long[]? axes)
    {
        if (axes is null || axes.Length == 0)
        {
            return shape.Where(d => d != 1).ToArray();
        }

        var norm = axes.Select(a => Axis(a, shape.Length)).ToHashSet();
        return shape.Where((_, d) => !norm.Contains(d)).ToArray();
    }

    /// <summary>Slice parameters per axis: start, step and output size, with ONNX's clamping.</summary>
    public static (long[] OutShape, long[] Starts, long[] Steps) Slice(long[] shape, long[] starts, long[] ends, long[]? axes, long[]? steps)
    {
        var rank = shape.Length;
        var outShape = (long[])shape.Clone();
        var st = new long[rank];
        var sp = Enumerable.Repeat(1L, rank).ToArray();
        for (var i = 0; i < starts.Length; i++)
        {
            var axis = Axis(axes is null ? i : axes[i], rank);
            var dim = shape[axis];
            var step = steps is null ? 1 : steps[i];
            if (step == 0)
            {
                throw new BatchwiseException("Slice step 0", "Steps must be non-zero.");
            }

            var s = starts[i];
            var e = ends[i];
            s = s < 0 ? s + dim : s;
            e = e < 0 ? e + dim : e;
            if (step > 0)
            {
                s = Math.Clamp(s, 0, dim);
                e = Math.Clamp(e, 0, dim);
                outShape[axis] = e > s ? (e - s + step - 1) / step : 0;
            }
            else
            {
                s = Math.Clamp(s, 0, dim - 1);
                e = Math.Clamp(e, -1, dim - 1);
                outShape[axis] = s > e ? (s - e + (-step) - 1) / -step : 0;
            }

            st[axis] = s;
            sp[axis] = step;
        }

        return (outShape, st, sp);
    }

    /// <summary>ints from an attribute or the value of a (host-known) input.</summary>
    public static long[] Ints(HostTensor? t) => t?.AsLongs() ?? [];
}
