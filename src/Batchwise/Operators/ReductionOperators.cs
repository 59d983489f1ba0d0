using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>Reductions over axes (ReduceMean, ReduceSum, ReduceMax...): one FLOP per input element.</summary>
internal static class ReductionOperators
{
    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Reduce(Define("ReduceMean", [1, 11, 13, 18]), 18, (sum, _, n) => sum / n);
        yield return Reduce(Define("ReduceSum", [1, 11, 13]), 13, (sum, _, _) => sum);
        yield return Reduce(Define("ReduceMax", [1, 11, 12, 13, 18, 20]), 18, null, max: true);
        yield return Reduce(Define("ReduceMin", [1, 11, 12, 13, 18, 20]), 18, null, max: false);
        yield return Reduce(Define("ReduceProd", [1, 11, 13, 18]), 18, null, product: true);
        yield return Reduce(Define("ReduceL1", [1, 11, 13, 18]), 18, (_, abs, _) => abs);
        yield return Reduce(Define("ReduceL2", [1, 11, 13, 18]), 18, (_, _, _) => double.NaN, squares: Math.Sqrt);
        yield return Reduce(Define("ReduceSumSquare", [1, 11, 13, 18]), 18, (_, _, _) => double.NaN, squares: s => s);
        yield return Reduce(Define("ReduceLogSum", [1, 11, 13, 18]), 18, (sum, _, _) => Math.Log(sum));
        yield return Reduce(Define("ReduceLogSumExp", [1, 11, 13, 18]), 18, null, logSumExp: true);
    }

    /// <summary>A reduction record: axes from an input from <paramref name="axesInputSince"/>, an attribute before.</summary>
    private static OperatorSchema Reduce(OperatorSchema s, int axesInputSince, Func<double, double, long, double>? finish, bool? max = null, bool product = false, Func<double, double>? squares = null, bool logSumExp = false) => s
        .WithAttributes(
            Attribute.Ints("axes", until: axesInputSince - 1),
            Attribute.Int("keepdims", 1),
            Attribute.Int("noop_with_empty_axes", 0, since: axesInputSince))
        .HostInputs([1], since: axesInputSince)
        .Shape(c =>
        {
            var x = c.In(0);
            var (axes, noop) = Axes(c.Opset, axesInputSince, c.Attributes, () => c.Has(1) ? c.RequireInts(1, "the axes") : null, x.Shape.Length);
            if (noop)
            {
                return [x.ShapeOnly];
            }

            var keep = c.Int("keepdims") != 0;
            var shape = x.Shape.Select((d, i) => (d, i)).Where(p => keep || !axes.Contains(p.i)).Select(p => axes.Contains(p.i) ? DimExpr.Of(1) : p.d).ToArray();
            return [new SymbolicValue(x.Type, shape)];
        })
        .Host(c =>
        {
            var x = c.In(0);
            var (axes, noop) = Axes(c.Opset, axesInputSince, c.Attributes, () => c.Optional(1)?.AsLongs(), x.Shape.Length);
            if (noop)
            {
                return [x];
            }

            var outShape = c.OutputShape(0);
            var keptShape = x.Shape.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
            var keptStrides = TensorMath.Strides(keptShape);
            var n = x.Count / Math.Max(1, TensorMath.Product(keptShape));
            var count = TensorMath.Product(keptShape);
            var sum = new double[count];
            var abs = new double[count];
            var sq = new double[count];
            var extreme = Enumerable.Repeat(max == false ? double.PositiveInfinity : double.NegativeInfinity, (int)count).ToArray();
            var prod = Enumerable.Repeat(1.0, (int)count).ToArray();
            var position = new long[x.Shape.Length];

            // For log-sum-exp: the maximum first, for stability.
            for (long i = 0; i < x.Count; i++)
            {
                ConvolutionOperators.Unravel(i, x.Shape, position);
                long k = 0;
                for (var d = 0; d < position.Length; d++)
                {
                    k += (axes.Contains(d) ? 0 : position[d]) * keptStrides[d];
                }

                var v = x[i];
                sum[k] += v;
                abs[k] += Math.Abs(v);
                sq[k] += v * v;
                prod[k] *= v;
                extreme[k] = max == false ? Math.Min(extreme[k], v) : Math.Max(extreme[k], v);
            }

            if (logSumExp)
            {
                Array.Clear(sum);
                for (long i = 0; i < x.Count; i++)
                {
                    ConvolutionOperators.Unravel(i, x.Shape, position);
                    long k = 0;
                    for (var d = 0; d < position.Length; d++)
                    {
                        k += (axes.Contains(d) ? 0 : position[d]) * keptStrides[d];
                    }

                    sum[k] += Math.Exp(x[i] - extreme[k]);
                }
            }

            double Result(long k) =>
                logSumExp ? extreme[k] + Math.Log(sum[k])
                : max is not null ? extreme[k]
                : product ? prod[k]
                : squares is not null ? squares(sq[k])
                : finish!(sum[k], abs[k], n);
            return [x.IsFloat || c.OpType is "ReduceMean" or "ReduceL2" or "ReduceLogSum" or "ReduceLogSumExp"
                ? HostTensor.Create(x.Type, outShape, Result)
                : HostTensor.CreateInts(x.Type, outShape, k => HostTensor.ToInteger(Result(k)))];
        }, eager: false)
        .Costs(OpCategory.Reduction, c => new OperatorWork(c.InputElements(0)));

    /// <summary>The reduced axes (all when none are given), or noop when empty axes mean the identity.</summary>
    private static (HashSet<int> Axes, bool Noop) Axes(long opset, int axesInputSince, NodeAttributes a, Func<long[]?> input, int rank)
    {
        var given = opset >= axesInputSince ? input() : a.Ints("axes");
        if (given is null || given.Length == 0)
        {
            return opset >= axesInputSince && a.Int("noop_with_empty_axes", 0) != 0 ? ([], true) : ([.. Enumerable.Range(0, rank)], false);
        }

        return ([.. given.Select(x => TensorMath.Axis(x, rank))], false);
    }
}
