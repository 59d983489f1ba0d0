using Batchwise.Analysis;
using Batchwise.Onnx;
using static Batchwise.Operators.OperatorRegistry;

namespace Batchwise.Operators;

/// <summary>
/// Recurrent layers: RNN, GRU and LSTM (forward, reverse, bidirectional; layout 0 [seq, batch, ...] and, from opset
/// 14, layout 1 [batch, seq, ...]; per-batch sequence lengths; clip; the ONNX activation functions). Each time step
/// is one GEMM of [x, h] by the stacked gate weights: the cost model counts it as seq x directions GEMMs of
/// M = batch, N = gates x hidden, K = input + hidden.
/// </summary>
internal static class RecurrentOperators
{
    public static IEnumerable<OperatorSchema> Records()
    {
        yield return Define("RNN", [1, 7, 14, 22])
            .WithAttributes([.. CommonAttributes(), Attribute.Strings("activations"), Attribute.Int("output_sequence", 0, until: 6)])
            .Shape(c => RecurrentShape(c, gates: 1, outputs: 2))
            .Host(c => Evaluate(c, Cell.Rnn), eager: false)
            .Costs(OpCategory.Gemm, c => RecurrentCost(c, gates: 1, pointwise: 2));

        yield return Define("GRU", [1, 3, 7, 14, 22])
            .WithAttributes([.. CommonAttributes(), Attribute.Strings("activations"), Attribute.Int("linear_before_reset", 0, since: 3), Attribute.Int("output_sequence", 0, until: 6)])
            .Shape(c => RecurrentShape(c, gates: 3, outputs: 2))
            .Host(c => Evaluate(c, Cell.Gru), eager: false)
            .Costs(OpCategory.Gemm, c => RecurrentCost(c, gates: 3, pointwise: 12));

        yield return Define("LSTM", [1, 7, 14, 22])
            .WithAttributes([.. CommonAttributes(), Attribute.Strings("activations"), Attribute.Int("input_forget", 0), Attribute.Int("output_sequence", 0, until: 6)])
            .Shape(c => RecurrentShape(c, gates: 4, outputs: 3))
            .Host(c => Evaluate(c, Cell.Lstm), eager: false)
            .Costs(OpCategory.Gemm, c => RecurrentCost(c, gates: 4, pointwise: 20));
    }

    private enum Cell
    {
        Rnn,
        Gru,
        Lstm,
    }

    private static AttributeSpec[] CommonAttributes() =>
    [
        Attribute.Floats("activation_alpha"),
        Attribute.Floats("activation_beta"),
        Attribute.Float("clip"),
        Attribute.String("direction", "forward"),
        Attribute.Int("hidden_size"),
        Attribute.Int("layout", 0, since: 14),
    ];

    private static int Directions(string direction, Func<string, Exception> fail) => direction switch
    {
        "forward" or "reverse" => 1,
        "bidirectional" => 2,
        _ => throw fail($"direction '{direction}' is not forward, reverse or bidirectional"),
    };

    private static SymbolicValue[] RecurrentShape(InferenceContext c, int gates, int outputs)
    {
        var (x, w, r) = (c.In(0), c.In(1), c.In(2));
        if (x.Shape.Length != 3 || w.Shape.Length != 3 || r.Shape.Length != 3)
        {
            throw c.Fail($"X, W and R must be 3-D, got ranks {x.Shape.Length}, {w.Shape.Length} and {r.Shape.Length}");
        }

        var layout = c.Opset >= 14 ? c.Int("layout") : 0;
        var (seq, batch) = layout == 0 ? (x.Shape[0], x.Shape[1]) : (x.Shape[1], x.Shape[0]);
        var directions = DimExpr.Of(Directions(c.String("direction"), c.Fail));
        var hidden = c.HasAttribute("hidden_size") ? DimExpr.Of(c.Int("hidden_size")) : r.Shape[2];
        if (w.Shape[1].IsConcrete && hidden.IsConcrete && w.Shape[1].Value != gates * hidden.Value)
        {
            throw c.Fail($"W has {w.Shape[1]} rows, not {gates} x hidden_size {hidden}");
        }

        if (w.Shape[0].IsConcrete && w.Shape[0] != directions)
        {
            throw c.Fail($"W is for {w.Shape[0]} direction(s), the direction attribute says {directions}");
        }

        DimExpr[] y = layout == 0 ? [seq, directions, batch, hidden] : [batch, seq, directions, hidden];
        DimExpr[] state = layout == 0 ? [directions, batch, hidden] : [batch, directions, hidden];
        var result = new SymbolicValue[outputs];
        result[0] = new SymbolicValue(x.Type, y);
        for (var k = 1; k < outputs; k++)
        {
            result[k] = new SymbolicValue(x.Type, state);
        }

        return result;
    }

    private static OperatorWork RecurrentCost(CostContext c, int gates, int pointwise)
    {
        var (x, w) = (c.InputShape(0), c.InputShape(1));
        var layout = c.Opset >= 14 ? c.Attributes.Int("layout", 0) : 0;
        var (seq, batch) = layout == 0 ? (x[0], x[1]) : (x[1], x[0]);
        var directions = w[0];
        var hidden = w[1] / gates;
        var gemm = new GemmShape(M: batch, N: gates * hidden, K: x[2] + hidden, BatchCount: seq * directions);
        return new OperatorWork((2 * gemm.Macs) + (pointwise * seq * directions * batch * hidden), gemm);
    }

    /// <summary>
    /// The alpha and beta of one ONNX recurrent activation, taken in order from the node's activation_alpha and
    /// activation_beta lists by the functions that use them, ONNX's defaults where the lists run out ((0, 0) for the
    /// functions without parameters). The host reference and the cuda engine read them here alike.
    /// </summary>
    internal static (double Alpha, double Beta) ActivationParameters(string name, Queue<double> alphas, Queue<double> betas)
    {
        double Alpha(double fallback) => alphas.Count > 0 ? alphas.Dequeue() : fallback;
        double Beta(double fallback) => betas.Count > 0 ? betas.Dequeue() : fallback;
        return name.ToLowerInvariant() switch
        {
            "leakyrelu" => (Alpha(0.01), 0),
            "thresholdedrelu" or "elu" => (Alpha(1.0), 0),
            "affine" => (Alpha(1.0), Beta(0.0)),
            "scaledtanh" => (Alpha(1.0), Beta(1.0)),
            "hardsigmoid" => (Alpha(0.2), Beta(0.5)),
            _ => (0, 0),
        };
    }

    /// <summary>Activations per direction of a recurrent op (RNN 1, GRU 2, LSTM 3).</summary>
    internal static int ActivationsPerDirection(string opType) => opType switch { "RNN" => 1, "GRU" => 2, _ => 3 };

    /// <summary>
    /// The activations of every direction in order: the node's own, which must be exactly one set per direction (ONNX:
    /// "3 (or 6 if bidirectional)" for LSTM; ONNX Runtime refuses any other count, so a bidirectional node with one set is
    /// refused, not guessed at), or ONNX's defaults for each direction when the node gives none.
    /// </summary>
    internal static string[] ActivationNames(string[]? given, string opType, int directions, Func<string, Exception> fail)
    {
        var perDirection = ActivationsPerDirection(opType);
        if (given is null)
        {
            var defaults = DefaultActivations(opType);
            return directions == 2 ? [.. defaults, .. defaults] : defaults;
        }

        return given.Length == perDirection * directions
            ? given
            : throw fail($"it gives {given.Length} activations; a {(directions == 2 ? "bidirectional" : "one-direction")} {opType} needs {perDirection * directions} ({perDirection} per direction, in order)");
    }

    /// <summary>ONNX's activations of a recurrent op when the node gives none.</summary>
    internal static string[] DefaultActivations(string opType) => opType switch
    {
        "RNN" => ["Tanh"],
        "GRU" => ["Sigmoid", "Tanh"],
        _ => ["Sigmoid", "Tanh", "Tanh"],
    };

    /// <summary>An ONNX recurrent activation with its alpha and beta (<see cref="ActivationParameters"/>).</summary>
    private static Func<double, double> Activation(string name, Queue<double> alphas, Queue<double> betas, Func<string, Exception> fail)
    {
        var lower = name.ToLowerInvariant();
        var (a, b) = ActivationParameters(lower, alphas, betas);
        return lower switch
        {
            "sigmoid" => v => 1 / (1 + Math.Exp(-v)),
            "tanh" => Math.Tanh,
            "relu" => v => Math.Max(0, v),
            "softsign" => v => v / (1 + Math.Abs(v)),
            "softplus" => v => Math.Log(1 + Math.Exp(v)),
            "leakyrelu" => v => v >= 0 ? v : a * v,
            "thresholdedrelu" => v => v > a ? v : 0,
            "elu" => v => v >= 0 ? v : a * (Math.Exp(v) - 1),
            "affine" => v => (a * v) + b,
            "scaledtanh" => v => a * Math.Tanh(b * v),
            "hardsigmoid" => v => Math.Clamp((a * v) + b, 0, 1),
            _ => throw fail($"activation '{name}' is not an ONNX recurrent activation"),
        };
    }

    private static HostTensor[] Evaluate(EvaluationContext c, Cell cell)
    {
        var gates = cell switch { Cell.Rnn => 1, Cell.Gru => 3, _ => 4 };
        var (x, w, r) = (c.In(0), c.In(1), c.In(2));
        var (bias, lengths, initialH) = (c.Optional(3), c.Optional(4), c.Optional(5));
        var initialC = cell == Cell.Lstm ? c.Optional(6) : null;
        var peepholes = cell == Cell.Lstm ? c.Optional(7) : null;
        var layout = c.Opset >= 14 ? c.Int("layout") : 0;
        var direction = c.String("direction");
        var directions = Directions(direction, c.Fail);
        var (seq, batch, input) = layout == 0 ? (x.Shape[0], x.Shape[1], x.Shape[2]) : (x.Shape[1], x.Shape[0], x.Shape[2]);
        var hidden = r.Shape[2];
        var clip = c.Attributes.Has("clip") ? c.Float("clip") : double.PositiveInfinity;
        var linearBeforeReset = cell == Cell.Gru && c.Opset >= 3 && c.Int("linear_before_reset") != 0;
        var inputForget = cell == Cell.Lstm && c.Int("input_forget") != 0;

        // Activations: one set per direction (a single set is used for both when only one is given).
        var opType = cell.ToString().ToUpperInvariant();
        var perDirection = ActivationsPerDirection(opType);
        var names = ActivationNames(c.Attributes.Strings("activations"), opType, directions, c.Fail);

        var (alphas, betas) = (new Queue<double>(c.Attributes.Floats("activation_alpha") ?? []), new Queue<double>(c.Attributes.Floats("activation_beta") ?? []));
        var functions = names.Take(perDirection * directions).Select(n => Activation(n, alphas, betas, c.Fail)).ToArray();

        var y = new double[seq * directions * batch * hidden];
        var yh = new double[directions * batch * hidden];
        var yc = new double[directions * batch * hidden];
        long XAt(long t, long b) => (layout == 0 ? (t * batch) + b : (b * seq) + t) * input;
        long YAt(long t, long d, long b) => (layout == 0 ? (((t * directions) + d) * batch) + b : (((b * seq) + t) * directions) + d) * hidden;
        long StateAt(long d, long b) => (layout == 0 ? (d * batch) + b : (b * directions) + d) * hidden;

        var pre = new double[gates * hidden];
        var rh = new double[gates * hidden];
        var h = new double[hidden];
        var cs = new double[hidden];
        var next = new double[hidden];
        for (var d = 0; d < directions; d++)
        {
            var reverse = direction == "reverse" || d == 1;
            var f = functions.AsSpan(d * perDirection, perDirection).ToArray();
            double Clip(double v) => Math.Clamp(v, -clip, clip);
            double Wb(long k) => bias is null ? 0 : bias[(d * 2 * gates * hidden) + k];
            double Rb(long k) => bias is null ? 0 : bias[(d * 2 * gates * hidden) + (gates * hidden) + k];
            double Rdot(long k, double[] v)
            {
                double s = 0;
                for (long j = 0; j < hidden; j++)
                {
                    s += v[j] * r[(((d * gates * hidden) + k) * hidden) + j];
                }

                return s;
            }

            for (long b = 0; b < batch; b++)
            {
                var length = lengths is null ? seq : Math.Min(seq, lengths.Int(b));
                for (long j = 0; j < hidden; j++)
                {
                    h[j] = initialH is null ? 0 : initialH[StateAt(d, b) + j];
                    cs[j] = initialC is null ? 0 : initialC[StateAt(d, b) + j];
                }

                for (long step = 0; step < length; step++)
                {
                    var t = reverse ? length - 1 - step : step;
                    var xt = XAt(t, b);
                    for (long k = 0; k < gates * hidden; k++)
                    {
                        double s = Wb(k);
                        for (long i = 0; i < input; i++)
                        {
                            s += x[xt + i] * w[(((d * gates * hidden) + k) * input) + i];
                        }

                        pre[k] = s;
                        rh[k] = Rdot(k, h) + Rb(k);
                    }

                    switch (cell)
                    {
                        case Cell.Rnn:
                            for (long j = 0; j < hidden; j++)
                            {
                                next[j] = f[0](Clip(pre[j] + rh[j]));
                            }

                            break;
                        case Cell.Gru:
                            {
                                // Gate order z, r, h.
                                var reset = new double[hidden];
                                var update = new double[hidden];
                                for (long j = 0; j < hidden; j++)
                                {
                                    update[j] = f[0](Clip(pre[j] + rh[j]));
                                    reset[j] = f[0](Clip(pre[hidden + j] + rh[hidden + j]));
                                }

                                var gated = new double[hidden];
                                for (long j = 0; j < hidden; j++)
                                {
                                    gated[j] = reset[j] * h[j];
                                }

                                for (long j = 0; j < hidden; j++)
                                {
                                    var k = (2 * hidden) + j;
                                    var recurrent = linearBeforeReset ? reset[j] * rh[k] : Rdot(k, gated) + Rb(k);
                                    var candidate = f[1](Clip(pre[k] + recurrent));
                                    next[j] = ((1 - update[j]) * candidate) + (update[j] * h[j]);
                                }

                                break;
                            }

                        default:
                            // Gate order i, o, f, c; peepholes i, o, f.
                            for (long j = 0; j < hidden; j++)
                            {
                                double P(int g) => peepholes is null ? 0 : peepholes[(d * 3 * hidden) + (g * hidden) + j];
                                var ig = f[0](Clip(pre[j] + rh[j] + (P(0) * cs[j])));
                                var fg = inputForget ? 1 - ig : f[0](Clip(pre[(2 * hidden) + j] + rh[(2 * hidden) + j] + (P(2) * cs[j])));
                                var candidate = f[1](Clip(pre[(3 * hidden) + j] + rh[(3 * hidden) + j]));
                                cs[j] = (fg * cs[j]) + (ig * candidate);
                                var og = f[0](Clip(pre[hidden + j] + rh[hidden + j] + (P(1) * cs[j])));
                                next[j] = og * f[2](cs[j]);
                            }

                            break;
                    }

                    Array.Copy(next, h, hidden);
                    Array.Copy(h, 0, y, YAt(t, d, b), hidden);
                }

                Array.Copy(h, 0, yh, StateAt(d, b), hidden);
                Array.Copy(cs, 0, yc, StateAt(d, b), hidden);
            }
        }

        var type = x.Type;
        var outputs = new List<HostTensor>
        {
            HostTensor.Create(type, c.OutputShape(0), i => y[i]),
            HostTensor.Create(type, c.OutputShape(1), i => yh[i]),
        };
        if (cell == Cell.Lstm)
        {
            outputs.Add(HostTensor.Create(type, c.OutputShape(2), i => yc[i]));
        }

        return [.. outputs];
    }
}
