using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Matrix products as GEMMs: Gemm (M, N, K from the transposes) and MatMul (with a 2-D right operand every leading
/// dimension folds into M; otherwise batched over the broadcast leading dimensions).
/// </summary>
internal static class MatrixOperators
{
    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("Gemm", [1, 6, 7, 9, 11, 13])
            .WithAttributes(
                Attribute.Float("alpha", 1.0f),
                Attribute.Float("beta", 1.0f),
                Attribute.Int("broadcast", 0, until: 6),
                Attribute.Int("transA", 0),
                Attribute.Int("transB", 0))
            .Shape(c =>
            {
                var (a, b) = (c.In(0), c.In(1));
                if (a.Shape.Length != 2 || b.Shape.Length != 2)
                {
                    throw c.Fail($"Gemm takes 2-D inputs, got ranks {a.Shape.Length} and {b.Shape.Length}");
                }

                var (m, ka) = c.Int("transA") != 0 ? (a.Shape[1], a.Shape[0]) : (a.Shape[0], a.Shape[1]);
                var (kb, n) = c.Int("transB") != 0 ? (b.Shape[1], b.Shape[0]) : (b.Shape[0], b.Shape[1]);
                if (ka.IsConcrete && kb.IsConcrete && ka != kb)
                {
                    throw c.Fail($"inner dimensions differ: A gives K={ka}, B gives K={kb}");
                }

                return [new SymbolicValue(a.Type, [m, n])];
            })
            .Host(c =>
            {
                var (a, b, bias) = (c.In(0), c.In(1), c.Optional(2));
                var (transA, transB) = (c.Int("transA") != 0, c.Int("transB") != 0);
                var (alpha, beta) = (c.Float("alpha"), c.Float("beta"));
                var shape = c.OutputShape(0);
                var (m, n) = (shape[0], shape[1]);
                var k = transA ? a.Shape[0] : a.Shape[1];
                var biasStrides = bias is null ? null : TensorMath.BroadcastStrides(bias.Shape, shape);
                return [HostTensor.Create(a.Type, shape, i =>
                {
                    var (row, col) = (i / n, i % n);
                    double sum = 0;
                    for (long j = 0; j < k; j++)
                    {
                        sum += a[transA ? (j * m) + row : (row * k) + j] * b[transB ? (col * k) + j : (j * n) + col];
                    }

                    return (alpha * sum) + (bias is null ? 0 : beta * bias[(row * biasStrides![0]) + (col * biasStrides[1])]);
                })];
            }, eager: false)
            .Costs(OpCategory.Gemm, c =>
            {
                var a = c.InputShape(0);
                var y = c.OutputShape(0);
                var gemm = new GemmShape(M: y[0], N: y[1], K: c.Attributes.Int("transA", 0) != 0 ? a[0] : a[1]);
                return new OperatorWork((2 * gemm.Macs) + (c.Has(2) ? c.OutputElements : 0), gemm);
            });

        yield return Define("MatMul", [1, 9, 13])
            .Shape(c => [MatMulShape(c, c.In(0), c.In(1), c.In(0).Type)])
            .Host(c => [MatMul(c.In(0), c.In(1), c.OutputShape(0), c.OutputType(0))], eager: false)
            .Costs(OpCategory.Gemm, c => MatMulCost(c, 0, 1));
    }

    internal static SymbolicValue MatMulShape(InferenceContext c, SymbolicValue left, SymbolicValue right, ElementType type)
    {
        var (a, b) = (left.Shape, right.Shape);
        if (a.Length == 0 || b.Length == 0)
        {
            throw c.Fail("MatMul does not take scalars");
        }

        var a2 = a.Length == 1 ? [DimExpr.Of(1), a[0]] : a;
        var b2 = b.Length == 1 ? [b[0], DimExpr.Of(1)] : b;
        if (a2[^1].IsConcrete && b2[^2].IsConcrete && a2[^1] != b2[^2])
        {
            throw c.Fail($"inner dimensions differ: [{string.Join(", ", a)}] x [{string.Join(", ", b)}]");
        }

        var shape = new List<DimExpr>(c.Broadcast(a2[..^2], b2[..^2]));
        if (a.Length > 1)
        {
            shape.Add(a2[^2]);
        }

        if (b.Length > 1)
        {
            shape.Add(b2[^1]);
        }

        return new SymbolicValue(type, [.. shape]);
    }

    /// <summary>Numpy matmul in doubles; <paramref name="value"/> reads an element of input 0 or 1 (zero points subtracted by the integer variants).</summary>
    internal static HostTensor MatMul(HostTensor a, HostTensor b, long[] outShape, ElementType outType, Func<int, long, double>? value = null)
    {
        value ??= (input, i) => input == 0 ? a[i] : b[i];
        long[] a2 = a.Shape.Length == 1 ? [1, a.Shape[0]] : a.Shape;
        long[] b2 = b.Shape.Length == 1 ? [b.Shape[0], 1] : b.Shape;
        var (m, k, n) = (a2[^2], a2[^1], b2[^1]);
        var batchShape = TensorMath.Broadcast(a2[..^2], b2[..^2]);
        var aStrides = TensorMath.BroadcastStrides(a2[..^2], batchShape);
        var bStrides = TensorMath.BroadcastStrides(b2[..^2], batchShape);
        var batchStrides = TensorMath.Strides(batchShape);
        var result = new double[TensorMath.Product(batchShape) * m * n];
        for (long batch = 0; batch < TensorMath.Product(batchShape); batch++)
        {
            long aBase = 0, bBase = 0;
            for (var d = 0; d < batchShape.Length; d++)
            {
                var idx = batch / batchStrides[d] % batchShape[d];
                aBase += idx * aStrides[d] * m * k;
                bBase += idx * bStrides[d] * k * n;
            }

            for (long row = 0; row < m; row++)
            {
                for (long col = 0; col < n; col++)
                {
                    double sum = 0;
                    for (long j = 0; j < k; j++)
                    {
                        sum += value(0, aBase + (row * k) + j) * value(1, bBase + (j * n) + col);
                    }

                    result[(((batch * m) + row) * n) + col] = sum;
                }
            }
        }

        return HostTensor.Create(outType, outShape, i => result[i]);
    }

    internal static OperatorWork MatMulCost(CostContext c, int left, int right)
    {
        var a = c.InputShape(left);
        var b = c.InputShape(right);
        var y = c.OutputShape(0);
        var k = a[^1];
        var n = b.Length == 1 ? 1 : b[^1];

        // With a 2-D right operand (a weight) engines fold every leading dimension into M: one GEMM.
        var m = a.Length == 1 ? 1 : a[^2];
        var gemm = b.Length <= 2
            ? new GemmShape(M: CostContext.Count(a) / k, N: n, K: k)
            : new GemmShape(M: m, N: n, K: k, BatchCount: CostContext.Count(y) / (m * n));
        return new OperatorWork(2 * gemm.Macs, gemm);
    }
}
