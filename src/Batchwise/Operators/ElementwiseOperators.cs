using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Pointwise operators: activations, arithmetic, comparisons, logic. FLOPs per output element: 1 for arithmetic,
/// 4 for transcendental functions (exp, erf, tanh, sigmoid, sqrt, pow...).
/// </summary>
internal static class ElementwiseOperators
{
    private const int Arithmetic = 1;
    private const int Transcendental = 4;

    private static readonly AttributeSpec ConsumedInputs = Attribute.Ints("consumed_inputs", until: 5);
    private static readonly AttributeSpec[] LegacyBroadcast = [Attribute.Int("axis", until: 6), Attribute.Int("broadcast", 0, until: 6)];

    public static IEnumerable<OperatorSchema> Records()
    {
        // ---- activations and unary math ----
        yield return Unary(Define("Relu", [1, 6, 13, 14]), Arithmetic, x => x > 0 ? x : 0, i => Math.Max(i, 0)).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Sigmoid", [1, 6, 13]), Transcendental, Sigmoid).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Tanh", [1, 6, 13]), Transcendental, Math.Tanh).WithAttributes(ConsumedInputs);
        yield return Unary(Define("LeakyRelu", [1, 6, 16]), Arithmetic, c => { var a = c.Float("alpha"); return x => x < 0 ? a * x : x; })
            .WithAttributes(Attribute.Float("alpha", 0.01f), ConsumedInputs);
        yield return Unary(Define("HardSigmoid", [1, 6, 22]), Arithmetic, c => { var (a, b) = (c.Float("alpha"), c.Float("beta")); return x => Math.Max(0, Math.Min(1, (a * x) + b)); })
            .WithAttributes(Attribute.Float("alpha", 0.2f), Attribute.Float("beta", 0.5f), ConsumedInputs);
        yield return Unary(Define("HardSwish", [14, 22]), Transcendental, x => x * Math.Max(0, Math.Min(1, (x / 6) + 0.5)));
        yield return Unary(Define("Exp", [1, 6, 13]), Transcendental, Math.Exp).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Erf", [9, 13]), Transcendental, Erf);
        yield return Unary(Define("Sqrt", [1, 6, 13]), Transcendental, Math.Sqrt).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Log", [1, 6, 13]), Transcendental, Math.Log).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Neg", [1, 6, 13]), Arithmetic, x => -x, i => -i).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Abs", [1, 6, 13]), Arithmetic, Math.Abs, Math.Abs).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Reciprocal", [1, 6, 13]), Arithmetic, x => 1 / x).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Floor", [1, 6, 13]), Arithmetic, Math.Floor).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Ceil", [1, 6, 13]), Arithmetic, Math.Ceiling).WithAttributes(ConsumedInputs);
        yield return Unary(Define("Round", [11, 22]), Arithmetic, x => Math.Round(x, MidpointRounding.ToEven));
        yield return Unary(Define("Sign", [9, 13]), Arithmetic, x => double.IsNaN(x) ? x : Math.Sign(x), i => Math.Sign(i));
        yield return Unary(Define("Sin", [7, 22]), Transcendental, Math.Sin);
        yield return Unary(Define("Cos", [7, 22]), Transcendental, Math.Cos);
        yield return Unary(Define("Tan", [7, 22]), Transcendental, Math.Tan);
        yield return Unary(Define("Asin", [7, 22]), Transcendental, Math.Asin);
        yield return Unary(Define("Acos", [7, 22]), Transcendental, Math.Acos);
        yield return Unary(Define("Atan", [7, 22]), Transcendental, Math.Atan);
        yield return Unary(Define("Sinh", [9, 22]), Transcendental, Math.Sinh);
        yield return Unary(Define("Cosh", [9, 22]), Transcendental, Math.Cosh);
        yield return Unary(Define("Asinh", [9, 22]), Transcendental, Math.Asinh);
        yield return Unary(Define("Acosh", [9, 22]), Transcendental, Math.Acosh);
        yield return Unary(Define("Atanh", [9, 22]), Transcendental, Math.Atanh);
        yield return Unary(Define("Elu", [1, 6, 22]), Transcendental, c => { var a = c.Float("alpha"); return x => x < 0 ? a * (Math.Exp(x) - 1) : x; })
            .WithAttributes(Attribute.Float("alpha", 1.0f), ConsumedInputs);
        yield return Unary(Define("Selu", [1, 6, 22]), Transcendental, c => { var (a, g) = (c.Float("alpha"), c.Float("gamma")); return x => x > 0 ? g * x : g * a * (Math.Exp(x) - 1); })
            .WithAttributes(Attribute.Float("alpha", 1.67326319217681884765625f), Attribute.Float("gamma", 1.05070102214813232421875f), ConsumedInputs);
        yield return Unary(Define("Celu", [12]), Transcendental, c => { var a = c.Float("alpha"); return x => Math.Max(0, x) + Math.Min(0, a * (Math.Exp(x / a) - 1)); })
            .WithAttributes(Attribute.Float("alpha", 1.0f));
        yield return Unary(Define("ThresholdedRelu", [10, 22]), Arithmetic, c => { var a = c.Float("alpha"); return x => x > a ? x : 0; })
            .WithAttributes(Attribute.Float("alpha", 1.0f));
        yield return Unary(Define("Softplus", [1, 22]), Transcendental, Softplus);
        yield return Unary(Define("Softsign", [1, 22]), Arithmetic, x => x / (1 + Math.Abs(x)));
        yield return Unary(Define("Mish", [18, 22]), Transcendental, x => x * Math.Tanh(Softplus(x)));
        yield return Unary(Define("Gelu", [20]), Transcendental, c => c.String("approximate") == "tanh"
                ? x => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + (0.044715 * x * x * x))))
                : x => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))))
            .WithAttributes(Attribute.String("approximate", "none"));
        yield return Unary(Define("Shrink", [9]), Arithmetic, c => { var (b, l) = (c.Float("bias"), c.Float("lambd")); return x => x < -l ? x + b : x > l ? x - b : 0; })
            .WithAttributes(Attribute.Float("bias", 0.0f), Attribute.Float("lambd", 0.5f));
        yield return Predicate(Define("Not", [1]), x => x == 0);
        yield return Predicate(Define("IsNaN", [9, 13, 20]), double.IsNaN);
        yield return Predicate(Define("IsInf", [10, 20]), c =>
            {
                var (negative, positive) = (c.Int("detect_negative") != 0, c.Int("detect_positive") != 0);
                return x => (positive && double.IsPositiveInfinity(x)) || (negative && double.IsNegativeInfinity(x));
            })
            .WithAttributes(Attribute.Int("detect_negative", 1), Attribute.Int("detect_positive", 1));
        yield return Unary(Define("BitwiseNot", [18]), Arithmetic, (EvaluationContext c) => throw c.Fail("BitwiseNot takes integer tensors"), i => ~i);

        // ---- binary arithmetic ----
        yield return Binary(Define("Add", [1, 6, 7, 13, 14]), Arithmetic, (a, b) => a + b, (a, b) => unchecked(a + b)).WithAttributes([.. LegacyBroadcast, ConsumedInputs]);
        yield return Binary(Define("Sub", [1, 6, 7, 13, 14]), Arithmetic, (a, b) => a - b, (a, b) => unchecked(a - b)).WithAttributes([.. LegacyBroadcast, ConsumedInputs]);
        yield return Binary(Define("Mul", [1, 6, 7, 13, 14]), Arithmetic, (a, b) => a * b, (a, b) => unchecked(a * b)).WithAttributes([.. LegacyBroadcast, ConsumedInputs]);
        yield return Binary(Define("Div", [1, 6, 7, 13, 14]), Arithmetic, (a, b) => a / b, (a, b) => b == 0 ? 0 : a / b).WithAttributes([.. LegacyBroadcast, ConsumedInputs]);
        yield return Binary(Define("Pow", [1, 7, 12, 13, 15]), Transcendental, Math.Pow, (a, b) => HostTensor.ToInteger(Math.Pow(a, b))).WithAttributes(LegacyBroadcast);
        yield return Binary(Define("Mod", [10, 13]), Arithmetic, c => c.Int("fmod") != 0 ? (a, b) => a % b : FloorMod, c => c.Int("fmod") != 0 ? (a, b) => b == 0 ? 0 : a % b : FloorMod)
            .WithAttributes(Attribute.Int("fmod", 0));
        yield return Binary(Define("PRelu", [1, 6, 7, 9, 16]), Arithmetic, (x, slope) => x < 0 ? slope * x : x, (x, slope) => x < 0 ? slope * x : x).WithAttributes(ConsumedInputs);
        yield return Binary(Define("BitShift", [11]), Arithmetic, null, c => c.String("direction") == "LEFT"
                ? (a, b) => b >= 64 ? 0 : a << (int)b
                : (a, b) => b >= 64 ? 0 : (long)((ulong)a >> (int)b))
            .WithAttributes(Attribute.String("direction", required: true));
        yield return Binary(Define("BitwiseAnd", [18]), Arithmetic, null, _ => (a, b) => a & b);
        yield return Binary(Define("BitwiseOr", [18]), Arithmetic, null, _ => (a, b) => a | b);
        yield return Binary(Define("BitwiseXor", [18]), Arithmetic, null, _ => (a, b) => a ^ b);

        // ---- comparisons and logic (bool outputs) ----
        yield return Comparison(Define("Equal", [1, 7, 11, 13, 19]), (a, b) => a == b).WithAttributes(LegacyBroadcast);
        yield return Comparison(Define("Less", [1, 7, 9, 13]), (a, b) => a < b).WithAttributes(LegacyBroadcast);
        yield return Comparison(Define("Greater", [1, 7, 9, 13]), (a, b) => a > b).WithAttributes(LegacyBroadcast);
        yield return Comparison(Define("LessOrEqual", [12, 16]), (a, b) => a <= b);
        yield return Comparison(Define("GreaterOrEqual", [12, 16]), (a, b) => a >= b);
        yield return Comparison(Define("And", [1, 7]), (a, b) => a != 0 && b != 0, logic: true).WithAttributes(LegacyBroadcast);
        yield return Comparison(Define("Or", [1, 7]), (a, b) => a != 0 || b != 0, logic: true).WithAttributes(LegacyBroadcast);
        yield return Comparison(Define("Xor", [1, 7]), (a, b) => (a != 0) ^ (b != 0), logic: true).WithAttributes(LegacyBroadcast);

        // ---- variadic ----
        yield return Variadic(Define("Min", [1, 6, 8, 12, 13]), (a, b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Min(a, b), Math.Min).WithAttributes(ConsumedInputs);
        yield return Variadic(Define("Max", [1, 6, 8, 12, 13]), (a, b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Max(a, b), Math.Max).WithAttributes(ConsumedInputs);
        yield return Variadic(Define("Sum", [1, 6, 8, 13]), (a, b) => a + b, (a, b) => unchecked(a + b)).WithAttributes(ConsumedInputs);
        yield return Variadic(Define("Mean", [1, 6, 8, 13]), (a, b) => a + b, null).WithAttributes(ConsumedInputs);

        yield return Define("Where", [9, 16])
            .Shape(c => [new SymbolicValue(c.In(1).Type, c.Broadcast(c.In(0).Shape, c.In(1).Shape, c.In(2).Shape))])
            .Host(c =>
            {
                var (condition, x, y) = (c.In(0), c.In(1), c.In(2));
                return [x.IsFloat
                    ? TensorMath.Map([condition, x, y], x.Type, a => a[0] != 0 ? a[1] : a[2])
                    : TensorMath.MapInts([condition, x, y], x.Type, a => a[0] != 0 ? a[1] : a[2])];
            })
            .Costs(OpCategory.Elementwise, PerElement(Arithmetic));

        yield return Define("Clip", [1, 6, 11, 12, 13])
            .WithAttributes(
                ConsumedInputs,
                Attribute.Float("max", until: 5),
                Attribute.Float("max", float.MaxValue, since: 6, until: 10),
                Attribute.Float("min", until: 5),
                Attribute.Float("min", float.MinValue, since: 6, until: 10))
            .HostInputs([1, 2], since: 11)
            .Shape(c => [c.In(0).ShapeOnly])
            .Host(c =>
            {
                var x = c.In(0);
                double lo, hi;
                if (c.Opset >= 11)
                {
                    lo = c.Optional(1) is { Count: > 0 } l ? l[0] : double.NegativeInfinity;
                    hi = c.Optional(2) is { Count: > 0 } h ? h[0] : double.PositiveInfinity;
                }
                else
                {
                    (lo, hi) = (c.Float("min"), c.Float("max"));
                }

                return [x.IsFloat
                    ? TensorMath.Map([x], x.Type, a => Math.Min(Math.Max(a[0], lo), hi))
                    : TensorMath.MapInts([x], x.Type, a => a[0] < lo ? (long)lo : a[0] > hi ? (long)hi : a[0])];
            })
            .Costs(OpCategory.Elementwise, PerElement(Arithmetic));
    }

    // ---- record builders ----

    private static CostFunction PerElement(int flops) => c => new OperatorWork(flops * c.OutputElements);

    private static OperatorSchema Unary(OperatorSchema s, int flops, Func<double, double> f, Func<long, long>? ints = null) => Unary(s, flops, _ => f, ints);

    private static OperatorSchema Unary(OperatorSchema s, int flops, Func<EvaluationContext, Func<double, double>> f, Func<long, long>? ints = null) => s
        .Shape(c => [c.In(0).ShapeOnly])
        .Host(c =>
        {
            var x = c.In(0);
            if (!x.IsFloat && ints is not null)
            {
                return [TensorMath.MapInts([x], x.Type, a => ints(a[0]))];
            }

            var fn = f(c);
            return [TensorMath.Map([x], x.Type, a => fn(a[0]))];
        })
        .Costs(OpCategory.Elementwise, PerElement(flops));

    private static OperatorSchema Predicate(OperatorSchema s, Func<double, bool> f) => Predicate(s, _ => f);

    private static OperatorSchema Predicate(OperatorSchema s, Func<EvaluationContext, Func<double, bool>> f) => s
        .Shape(c => [new SymbolicValue(ElementType.Bool, c.In(0).Shape)])
        .Host(c =>
        {
            var fn = f(c);
            return [TensorMath.Map([c.In(0)], ElementType.Bool, a => fn(a[0]) ? 1 : 0)];
        })
        .Costs(OpCategory.Elementwise, PerElement(Arithmetic));

    private static OperatorSchema Binary(OperatorSchema s, int flops, Func<double, double, double> f, Func<long, long, long>? ints) => Binary(s, flops, _ => f, ints is null ? null : _ => ints);

    private static OperatorSchema Binary(OperatorSchema s, int flops, Func<EvaluationContext, Func<double, double, double>>? f, Func<EvaluationContext, Func<long, long, long>>? ints) => s
        .Shape(BinaryShape)
        .Host(c =>
        {
            var (a, b) = (c.In(0), c.In(1));
            if (!a.IsFloat && ints is not null)
            {
                var fi = ints(c);
                return [TensorMath.MapInts([a, b], a.Type, x => fi(x[0], x[1]))];
            }

            var fn = f?.Invoke(c) ?? throw c.Fail($"{a.Type.ShortName()} inputs are not defined for {c.OpType}");
            return [TensorMath.Map([a, b], a.Type, x => fn(x[0], x[1]))];
        })
        .Costs(OpCategory.Elementwise, PerElement(flops));

    private static OperatorSchema Comparison(OperatorSchema s, Func<double, double, bool> f, bool logic = false) => s
        .Shape(c => [new SymbolicValue(ElementType.Bool, c.Broadcast(c.In(0).Shape, c.In(1).Shape))])
        .Host(c =>
        {
            var (a, b) = (c.In(0), c.In(1));

            // Integers compare exactly in longs (int64 values beyond 2^53 differ in doubles).
            return [!a.IsFloat && !b.IsFloat && !logic
                ? TensorMath.MapInts([a, b], ElementType.Bool, x => f(x[0].CompareTo(x[1]), 0) ? 1 : 0)
                : TensorMath.Map([a, b], ElementType.Bool, x => f(x[0], x[1]) ? 1 : 0)];
        })
        .Costs(OpCategory.Elementwise, PerElement(Arithmetic));

    private static OperatorSchema Variadic(OperatorSchema s, Func<double, double, double> f, Func<long, long, long>? ints) => s
        .Shape(c => [c.In(0).ShapeOnly with { Shape = c.Broadcast([.. c.Present().Select(v => v.Shape)]) }])
        .Host(c =>
        {
            var inputs = c.Present();
            var result = inputs[0];
            foreach (var next in inputs.Skip(1))
            {
                result = !result.IsFloat && ints is not null
                    ? TensorMath.MapInts([result, next], result.Type, x => ints(x[0], x[1]))
                    : TensorMath.Map([result, next], result.Type, x => f(x[0], x[1]));
            }

            return [c.OpType == "Mean" || inputs.Length == 1 ? TensorMath.Map([result], result.Type, x => c.OpType == "Mean" ? x[0] / inputs.Length : x[0]) : result];
        })
        .Costs(OpCategory.Elementwise, c => new OperatorWork(Math.Max(1, c.Node.Input.Count(i => i.Length > 0) - 1) * c.OutputElements));

    /// <summary>Broadcast shape; small integer tensors known symbolically (shape arithmetic) are computed through.</summary>
    private static SymbolicValue[] BinaryShape(InferenceContext c)
    {
        var (a, b) = (c.In(0), c.In(1));
        var shape = c.Broadcast(a.Shape, b.Shape);
        DimExpr[]? data = null;
        if (a.Data is { } x && b.Data is { } y && (x.Length == 1 || y.Length == 1 || x.Length == y.Length) && shape.Length <= 1)
        {
            var n = Math.Max(x.Length, y.Length);
            data = new DimExpr[n];
            for (var i = 0; i < n; i++)
            {
                var (p, q) = (x[x.Length == 1 ? 0 : i], y[y.Length == 1 ? 0 : i]);
                DimExpr? r = c.OpType switch
                {
                    "Add" => p + q,
                    "Sub" => p - q,
                    "Mul" => p * q,
                    "Div" => p.FloorDivide(q),
                    "Mod" when !p.IsConcrete || !q.IsConcrete => DimExpr.Symbol($"({p} mod {q})"),
                    _ => null,
                };
                if (r is null)
                {
                    data = null;
                    break;
                }

                data[i] = r.Value;
            }
        }

        return [new SymbolicValue(a.Type, shape, data)];
    }

    // ---- math ----

    private static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    private static double Softplus(double x) => x > 0 ? x + Math.Log(1 + Math.Exp(-x)) : Math.Log(1 + Math.Exp(x));

    private static double FloorMod(double a, double b)
    {
        var r = a % b;
        return r != 0 && (r < 0) != (b < 0) ? r + b : r;
    }

    private static long FloorMod(long a, long b)
    {
        if (b == 0)
        {
            return 0;
        }

        var r = a % b;
        return r != 0 && (r < 0) != (b < 0) ? r + b : r;
    }

    /// <summary>The error function (W. J. Cody's rational approximations, relative error below 1e-15).</summary>
    public static double Erf(double x)
    {
        var ax = Math.Abs(x);
        if (ax <= 0.46875)
        {
            return x * ErfSmall(x * x);
        }

        var erfc = ax < 4 ? ErfcMiddle(ax) : ErfcLarge(ax);
        return x < 0 ? erfc - 1 : 1 - erfc;
    }

    private static double ErfSmall(double z)
    {
        ReadOnlySpan<double> a = [3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03, 1.85777706184603153e-1];
        ReadOnlySpan<double> b = [2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03];
        var num = a[4] * z;
        var den = z;
        for (var i = 0; i < 3; i++)
        {
            num = (num + a[i]) * z;
            den = (den + b[i]) * z;
        }

        return (num + a[3]) / (den + b[3]);
    }

    private static double ErfcMiddle(double y)
    {
        ReadOnlySpan<double> c = [5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8];
        ReadOnlySpan<double> d = [1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03];
        var num = c[8] * y;
        var den = y;
        for (var i = 0; i < 7; i++)
        {
            num = (num + c[i]) * y;
            den = (den + d[i]) * y;
        }

        var r = (num + c[7]) / (den + d[7]);
        var ysq = Math.Truncate(y * 16) / 16;
        var del = (y - ysq) * (y + ysq);
        return Math.Exp(-ysq * ysq) * Math.Exp(-del) * r;
    }

    private static double ErfcLarge(double y)
    {
        if (y > 26.5)
        {
            return 0;
        }

        ReadOnlySpan<double> p = [3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2];
        ReadOnlySpan<double> q = [2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1, 6.05183413124413191e-2, 2.33520497626869185e-3];
        var z = 1 / (y * y);
        var num = p[5] * z;
        var den = z;
        for (var i = 0; i < 4; i++)
        {
            num = (num + p[i]) * z;
            den = (den + q[i]) * z;
        }

        var r = z * (num + p[4]) / (den + q[4]);
        r = (0.56418958354775628695 - r) / y;
        var ysq = Math.Truncate(y * 16) / 16;
        var del = (y - ysq) * (y + ysq);
        return Math.Exp(-ysq * ysq) * Math.Exp(-del) * r;
    }
}
