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

        yield return Define("Einsum", [12])
            .WithAttributes(Attribute.String("equation", required: true))
            .Shape(c =>
            {
                var inputs = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
                var equation = EinsumEquation.Parse(c.String("equation"), [.. inputs.Select(v => v.Shape.Length)], c.Fail);
                var sizes = equation.Sizes(
                    [.. inputs.Select(v => v.Shape)],
                    d => d.IsConcrete && d.Value == 1,
                    (a, b) => a.IsConcrete && b.IsConcrete && a != b,
                    c.Fail);
                return [new SymbolicValue(inputs[0].Type, [.. equation.Output.Select(l => sizes[l])])];
            })
            .Host(c =>
            {
                var inputs = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
                return [Einsum(EinsumEquation.Parse(c.String("equation"), [.. inputs.Select(v => v.Shape.Length)], c.Fail), inputs, c.OutputType(0), c.Fail)];
            }, eager: false)
            .Costs(OpCategory.Gemm, EinsumCost);
    }

    /// <summary>Einsum in doubles: every output element sums the product of the operands over the summed labels (repeated labels read diagonals; size-1 dimensions broadcast).</summary>
    internal static HostTensor Einsum(EinsumEquation equation, HostTensor[] inputs, ElementType type, Func<string, Exception> fail)
    {
        var sizes = equation.Sizes([.. inputs.Select(v => v.Shape)], d => d == 1, (a, b) => a != b, fail);
        var labels = equation.AllLabels;
        var extent = labels.Select(l => sizes[l]).ToArray();
        var outShape = equation.Output.Select(l => sizes[l]).ToArray();

        // Each operand's stride per label: summed over repeated labels (a diagonal), 0 along broadcast dimensions.
        var strides = inputs.Select((v, i) =>
        {
            var own = TensorMath.Strides(v.Shape);
            var s = new long[labels.Length];
            for (var k = 0; k < v.Shape.Length; k++)
            {
                if (v.Shape[k] != 1 || extent[Array.IndexOf(labels, equation.Inputs[i][k])] == 1)
                {
                    s[Array.IndexOf(labels, equation.Inputs[i][k])] += own[k];
                }
            }

            return s;
        }).ToArray();

        var outCount = TensorMath.Product(outShape);
        var summedCount = TensorMath.Product(extent.Skip(outShape.Length));
        var result = new double[outCount];
        var position = new long[labels.Length];
        for (long o = 0; o < outCount; o++)
        {
            double sum = 0;
            for (long s = 0; s < summedCount; s++)
            {
                // Position of every label: output labels from o, summed labels from s (row-major).
                var (rest, restSummed) = (o, s);
                for (var k = labels.Length - 1; k >= 0; k--)
                {
                    if (k >= outShape.Length)
                    {
                        position[k] = restSummed % extent[k];
                        restSummed /= extent[k];
                    }
                    else
                    {
                        position[k] = rest % extent[k];
                        rest /= extent[k];
                    }
                }

                double product = 1;
                for (var i = 0; i < inputs.Length; i++)
                {
                    long offset = 0;
                    for (var k = 0; k < labels.Length; k++)
                    {
                        offset += position[k] * strides[i][k];
                    }

                    product *= inputs[i][offset];
                }

                sum += product;
            }

            result[o] = sum;
        }

        return HostTensor.Create(type, outShape, i => result[i]);
    }

    /// <summary>
    /// Einsum's FLOPs: a multiply per operand after the first and an add, over every label combination. With two
    /// operands it is one (batched) GEMM: batch = labels in both operands and the output, M = labels only in the
    /// first operand (and the output), N = only in the second, K = labels summed over.
    /// </summary>
    internal static OperatorWork EinsumCost(CostContext c)
    {
        var count = c.Node.Input.Count;
        var shapes = Enumerable.Range(0, count).Select(c.InputShape).ToArray();
        var equation = EinsumEquation.Parse(c.Attributes.String("equation", string.Empty), [.. shapes.Select(s => s.Length)], m => new BatchwiseException($"Einsum: {m}", "Check the model."));
        var sizes = equation.Sizes(shapes, d => d == 1, (a, b) => a != b, m => new BatchwiseException($"Einsum: {m}", "Check the model."));
        var all = CostContext.Count(equation.AllLabels.Select(l => sizes[l]));
        if (count != 2)
        {
            return new OperatorWork(Math.Max(1, count) * all);
        }

        long Product(Func<int, bool> where) => CostContext.Count(equation.AllLabels.Where(where).Select(l => sizes[l]));
        var (a, b, output) = (equation.Inputs[0], equation.Inputs[1], equation.Output);
        var gemm = new GemmShape(
            M: Product(l => a.Contains(l) && !b.Contains(l)),
            N: Product(l => b.Contains(l) && !a.Contains(l)),
            K: Product(l => a.Contains(l) && b.Contains(l) && !output.Contains(l)),
            BatchCount: Product(l => a.Contains(l) && b.Contains(l) && output.Contains(l)));
        return new OperatorWork(2 * all, gemm);
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
