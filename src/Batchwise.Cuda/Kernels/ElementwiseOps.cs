using Batchwise.Onnx;

namespace Batchwise.Cuda.Kernels;

/// <summary>The C expressions of ONNX's elementwise operators, over inputs named x0, x1, ...</summary>
internal static class ElementwiseOps
{
    private static readonly HashSet<string> Unary = new(StringComparer.Ordinal)
    {
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Sqrt", "Exp", "Erf", "Log", "Abs", "Neg",
        "Reciprocal", "Floor", "Ceil", "Round", "Elu", "Selu", "Softplus", "Softsign", "Sin", "Cos", "Sign", "Not", "Gelu",
        "Mish", "Identity", "Celu", "ThresholdedRelu", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
        "Shrink", "IsNaN", "IsInf", "BitwiseNot",
    };

    private static readonly HashSet<string> Binary = new(StringComparer.Ordinal)
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor",
        "PRelu", "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
    };

    private static readonly HashSet<string> Variadic = new(StringComparer.Ordinal) { "Min", "Max", "Sum", "Mean" };

    /// <summary>Every operator this table generates (Clip, Where, Cast and BatchNormalization included).</summary>
    public static IEnumerable<string> Operators => Unary.Concat(Binary).Concat(Variadic).Concat(["Clip", "Where", "Cast", "CastLike", "BatchNormalization"]);

    /// <summary>True for operators this table generates (Clip, Where, Cast and BatchNormalization included).</summary>
    public static bool Handles(string op) => Unary.Contains(op) || Binary.Contains(op) || Variadic.Contains(op) || op is "Clip" or "Where" or "Cast" or "CastLike" or "BatchNormalization";

    /// <summary>Output element type of an elementwise operator.</summary>
    public static ElementType OutputType(string op, IReadOnlyList<ElementType> inputs, ElementType? castTo = null) => op switch
    {
        "Equal" or "Less" or "Greater" or "LessOrEqual" or "GreaterOrEqual" or "And" or "Or" or "Xor" or "Not" or "IsNaN" or "IsInf" => ElementType.Bool,
        "Where" => inputs[1],
        "Cast" or "CastLike" => castTo ?? throw new ArgumentNullException(nameof(castTo)),
        _ => inputs[0],
    };

    /// <summary>The expression computing one output element; attribute values are read through <paramref name="attr"/>.</summary>
    public static string Expression(string op, IReadOnlyList<ElementType> types, Func<string, double, double> attr, string? mode = null)
    {
        var t = types[0];
        var isF = t == ElementType.Float;
        var isD = t == ElementType.Double;
        string Fn(string f) => isF ? f + "f" : f;
        string C(double v) => KernelSource.F(v, isD ? ElementType.Double : ElementType.Float);
        var ct = t == ElementType.Bool ? "bool" : KernelSource.CType(t);
        if (t.IsFloatingPoint() && op is "BitwiseNot" or "BitwiseAnd" or "BitwiseOr" or "BitwiseXor" or "BitShift")
        {
            throw new BatchwiseException($"{op} on {t.ShortName()} tensors is not supported", "ONNX defines it for integer tensors.");
        }

        if (!t.IsFloatingPoint() && op is "Sigmoid" or "Tanh" or "Sqrt" or "Exp" or "Erf" or "Log" or "Sin" or "Cos" or "HardSigmoid" or "HardSwish" or "Elu" or "Selu" or "Softplus" or "Softsign" or "Gelu" or "Mish" or "Celu" or "Floor" or "Ceil" or "Round" or "Reciprocal"
            or "Tan" or "Asin" or "Acos" or "Atan" or "Sinh" or "Cosh" or "Asinh" or "Acosh" or "Atanh" or "IsNaN" or "IsInf")
        {
            throw new BatchwiseException($"{op} on {t.ShortName()} tensors is not supported", "ONNX defines it for floating point tensors.");
        }

        return op switch
        {
            "Identity" => "x0",
            "Relu" => $"x0 > ({ct})0 ? x0 : ({ct})0",
            "LeakyRelu" => $"x0 >= 0 ? x0 : x0 * {C(attr("alpha", 0.01))}",
            "ThresholdedRelu" => $"x0 > {C(attr("alpha", 1.0))} ? x0 : 0",
            "Sigmoid" => "bw_sigmoid(x0)",
            "Tanh" => $"{Fn("tanh")}(x0)",
            "HardSigmoid" => $"{Fn("fmax")}(0, {Fn("fmin")}(1, {C(attr("alpha", 0.2))} * x0 + {C(attr("beta", 0.5))}))",
            "HardSwish" => $"x0 * {Fn("fmax")}(0, {Fn("fmin")}(1, x0 * {C(1.0 / 6)} + {C(0.5)}))",
            "Sqrt" => $"{Fn("sqrt")}(x0)",
            "Exp" => $"{Fn("exp")}(x0)",
            "Erf" => $"{Fn("erf")}(x0)",
            "Log" => $"{Fn("log")}(x0)",
            "Sin" => $"{Fn("sin")}(x0)",
            "Cos" => $"{Fn("cos")}(x0)",
            "Abs" => $"x0 < ({ct})0 ? ({ct})-x0 : x0",
            "Neg" => "-x0",
            "Sign" => $"(x0 > ({ct})0) - (x0 < ({ct})0)",
            "Reciprocal" => $"{C(1)} / x0",
            "Floor" => $"{Fn("floor")}(x0)",
            "Ceil" => $"{Fn("ceil")}(x0)",
            "Round" => $"{Fn("rint")}(x0)",
            "Elu" => $"x0 >= 0 ? x0 : {C(attr("alpha", 1.0))} * ({Fn("exp")}(x0) - 1)",
            "Celu" => $"{Fn("fmax")}(0, x0) + {Fn("fmin")}(0, {C(attr("alpha", 1.0))} * ({Fn("exp")}(x0 / {C(attr("alpha", 1.0))}) - 1))",
            "Selu" => $"{C(attr("gamma", 1.0507009873554804934193349852946))} * (x0 > 0 ? x0 : {C(attr("alpha", 1.6732632423543772848170429916717))} * ({Fn("exp")}(x0) - 1))",
            "Softplus" => isF ? "bw_softplus(x0)" : "log1p(exp(x0))",
            "Softsign" => $"x0 / (1 + {Fn("fabs")}(x0))",
            "Gelu" => mode == "tanh" ? "bw_gelu_tanh(x0)" : "bw_gelu(x0)",
            "Mish" => $"x0 * {Fn("tanh")}({(isF ? "bw_softplus(x0)" : "log1p(exp(x0))")})",
            "Not" => "!x0",
            "Tan" => $"{Fn("tan")}(x0)",
            "Asin" => $"{Fn("asin")}(x0)",
            "Acos" => $"{Fn("acos")}(x0)",
            "Atan" => $"{Fn("atan")}(x0)",
            "Sinh" => $"{Fn("sinh")}(x0)",
            "Cosh" => $"{Fn("cosh")}(x0)",
            "Asinh" => $"{Fn("asinh")}(x0)",
            "Acosh" => $"{Fn("acosh")}(x0)",
            "Atanh" => $"{Fn("atanh")}(x0)",
            "Shrink" => $"x0 < -{C(attr("lambd", 0.5))} ? x0 + {C(attr("bias", 0))} : (x0 > {C(attr("lambd", 0.5))} ? x0 - {C(attr("bias", 0))} : ({ct})0)",
            "IsNaN" => "isnan(x0)",
            "IsInf" => (attr("detect_positive", 1) != 0, attr("detect_negative", 1) != 0) switch
            {
                (true, true) => "isinf(x0)",
                (true, false) => "isinf(x0) && x0 > 0",
                (false, true) => "isinf(x0) && x0 < 0",
                _ => "false",
            },
            "BitwiseNot" => "~x0",
            "BitwiseAnd" => "x0 & x1",
            "BitwiseOr" => "x0 | x1",
            "BitwiseXor" => "x0 ^ x1",
            "Add" => "x0 + x1",
            "Sub" => "x0 - x1",
            "Mul" => "x0 * x1",
            "Div" => "x0 / x1",
            "Mod" => t.IsFloatingPoint() ? $"{Fn("fmod")}(x0, x1)" : attr("fmod", 0) != 0 ? "x0 % x1" : "((x0 % x1) != 0 && (((x0 % x1) < 0) != (x1 < 0))) ? (x0 % x1) + x1 : (x0 % x1)",

            "Pow" => isF ? "powf(x0, (float)x1)" : isD ? "pow(x0, (double)x1)" : $"({ct})pow((double)x0, (double)x1)",
            "PRelu" => "x0 < 0 ? x0 * x1 : x0",
            "Equal" => "x0 == x1",
            "Less" => "x0 < x1",
            "Greater" => "x0 > x1",
            "LessOrEqual" => "x0 <= x1",
            "GreaterOrEqual" => "x0 >= x1",
            "And" => "x0 && x1",
            "Or" => "x0 || x1",
            "Xor" => "x0 != x1",
            "BitShift" => mode == "LEFT" ? "x0 << x1" : "x0 >> x1",
            "Where" => "x0 ? x1 : x2",
            "Cast" or "CastLike" => "x0",
            "BatchNormalization" => $"(x0 - x3) / {Fn("sqrt")}(x4 + {C(attr("epsilon", 1e-5))}) * x1 + x2",
            "Clip" => ClipExpression(types, attr),
            "Min" => Chain(types.Count, (a, b) => $"({a} < {b} ? {a} : {b})"),
            "Max" => Chain(types.Count, (a, b) => $"({a} > {b} ? {a} : {b})"),
            "Sum" => Chain(types.Count, (a, b) => $"({a} + {b})"),
            "Mean" => $"{Chain(types.Count, (a, b) => $"({a} + {b})")} / {C(types.Count)}",
            _ => throw new BatchwiseException($"No elementwise kernel for {op}", "This is a bug in the cuda engine."),
        };
    }

    private static string ClipExpression(IReadOnlyList<ElementType> types, Func<string, double, double> attr)
    {
        var t = types[0];
        var lo = attr("min", double.NegativeInfinity);
        var hi = attr("max", double.PositiveInfinity);
        string Lit(double v) => t.IsFloatingPoint() ? KernelSource.F(v, t) : ((long)Math.Clamp(v, long.MinValue / 2.0, long.MaxValue / 2.0)).ToString(System.Globalization.CultureInfo.InvariantCulture) + "LL";
        var e = "x0";
        if (!double.IsNegativeInfinity(lo))
        {
            e = $"({e} < {Lit(lo)} ? {Lit(lo)} : {e})";
        }

        if (!double.IsPositiveInfinity(hi))
        {
            e = $"({e} > {Lit(hi)} ? {Lit(hi)} : {e})";
        }

        return e;
    }

    private static string Chain(int n, Func<string, string, string> combine)
    {
        var e = "x0";
        for (var i = 1; i < n; i++)
        {
            e = combine(e, "x" + i);
        }

        return e;
    }
}
