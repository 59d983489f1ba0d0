using Batchwise.Cuda.Kernels;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>Elementwise operators: pending expressions that fuse into one generated kernel per chain (see GraphCompiler.Layout.cs).</summary>
internal sealed partial class GraphCompiler
{
    private static IEnumerable<(string, OperatorLowering)> ElementwiseLowerings()
    {
        // Identity is a view (Views.cs); BatchNormalization registers with the normalizations.
        foreach (var op in ElementwiseOps.Operators.Where(o => o is not ("Identity" or "BatchNormalization")))
        {
            yield return (op, new((c, n, i, a) => c.LowerElementwise(n, i, a), InputLayout.Pending, ElementwiseCheck));
        }
    }

    /// <summary>The operand of an And (Or: ONNX's take booleans only) whose other operand is a constant all true (all false), or null.</summary>
    private static PlanValue? ChangesNothing(string op, PlanValue left, PlanValue right)
    {
        var identity = op == "And";
        bool All(PlanValue v)
        {
            if (v.Constant is not { } c)
            {
                return false;
            }

            for (long i = 0; i < c.Count; i++)
            {
                if ((c[i] != 0) != identity)
                {
                    return false;
                }
            }

            return true;
        }

        return All(left) && right.Constant is null ? right : All(right) && left.Constant is null ? left : null;
    }

    private static string? ElementwiseCheck(OnnxProto.NodeProto node, NodeAttributes attrs, long opset) => node.OpType switch
    {
        "Cast" when !OperatorSupport.Stores((ElementType)attrs.Int("to", 1)) => $"casting to {((ElementType)attrs.Int("to", 1)).ShortName()}",
        "BitShift" when attrs.String("direction", "LEFT") is not ("LEFT" or "RIGHT") => $"direction '{attrs.String("direction", "LEFT")}'",
        "Gelu" when attrs.String("approximate", "none") is not ("none" or "tanh") => "approximate other than none or tanh",
        _ => null,
    };

    private void LowerElementwise(OnnxProto.NodeProto node, PlanValue?[] ins, NodeAttributes attrs)
    {
        var op = node.OpType;
        if (op == "Pow" && SmallPower(ins[0]!, ins[1]!) is { } power)
        {
            // x^2 and x^3 (the cube in GELU's tanh form) as products: powf costs tens of instructions an element, enough
            // to make a fused chain compute-bound (GPT-2's MLP activation ran at a fifth of the memory bandwidth).
            var x = ins[0]!;
            _values[node.Output[0]] = Pending([x], _ => power == 2 ? "x0 * x0" : "x0 * x0 * x0", x.Type, x.Shape);
            return;
        }

        if (op is "And" or "Or" && ins is [{ } left, { } right] && ChangesNothing(op, left, right) is { } kept && ReadOnlyAsMask(node.Output[0]))
        {
            // Hugging Face's masks: And(q_idx >= 0 over [1, 1, Sq, 1], padding [B, 1, 1, Sk]) is the padding read per query.
            var shape = Shapes.Broadcast(left.Shape, right.Shape);
            _values[node.Output[0]] = shape.SequenceEqual(kept.Shape) ? kept : BroadcastView(kept, shape);
            return;
        }

        if (op is "Cast" or "CastLike" && ins[0] is { } same && same.Type == (op == "Cast" ? (ElementType)attrs.Int("to", 1) : ins[1]!.Type))
        {
            // A cast to the type the value has (the BERT export's boolean mask cast to bool again) is the value itself,
            // a view or a chain not written yet included.
            _values[node.Output[0]] = same;
            return;
        }

        var inputs = new List<PlanValue>();
        var shapes = new List<long[]>();
        Func<string, double, double> attr = (name, fallback) => attrs.Float(name, fallback);
        ElementType? castTo = null;
        switch (op)
        {
            case "BatchNormalization":
                {
                    // Per-channel vectors broadcast as [C, 1, ...] against [N, C, spatial...].
                    var x = ins[0]!;
                    inputs.Add(x);
                    shapes.Add(x.Shape);
                    for (var k = 1; k <= 4; k++)
                    {
                        var p = ins[k]!;
                        inputs.Add(p);
                        shapes.Add(x.Shape.Select((s, d) => d == 1 ? p.Count : 1).ToArray());
                    }

                    break;
                }

            case "Clip":
                {
                    inputs.Add(ins[0]!);
                    shapes.Add(ins[0]!.Shape);
                    attr = ClipBounds(ins.ElementAtOrDefault(1)?.Constant, ins.ElementAtOrDefault(2)?.Constant, attrs);
                    break;
                }

            case "Cast" or "CastLike":
                castTo = op == "Cast" ? (ElementType)attrs.Int("to", 1) : ins[1]!.Type;
                inputs.Add(ins[0]!);
                shapes.Add(ins[0]!.Shape);
                break;
            default:
                foreach (var v in ins.Where(v => v is not null))
                {
                    inputs.Add(v!);
                    shapes.Add(v!.Shape);
                }

                if (op is "Mod" or "IsInf")
                {
                    // Integer attributes (fmod, detect_positive, detect_negative).
                    attr = (name, fallback) => attrs.Int(name, (long)fallback);
                }

                break;
        }

        var outShape = op == "BatchNormalization" ? inputs[0].Shape : Shapes.Broadcast(shapes.ToArray());

        // Operands viewed at the shapes they broadcast from (BatchNormalization's [C] vectors as [C, 1, ...]).
        var operands = inputs.Select((v, k) => v.Shape.SequenceEqual(shapes[k]) ? v : View(v, shapes[k])).ToList();
        var outType = ElementwiseOps.OutputType(op, inputs.Select(St).ToList(), castTo);
        var mode = op switch
        {
            "Gelu" => attrs.String("approximate", "none"),
            "BitShift" => attrs.String("direction", "LEFT"),
            _ => null,
        };
        string Expression(IReadOnlyList<ElementType> types) => op is "Cast" or "CastLike" && outType == ElementType.Bool ? "x0 != 0" : ElementwiseOps.Expression(op, types, attr, mode);
        _values[node.Output[0]] = Pending(operands, Expression, outType, outShape);
    }

    /// <summary>
    /// Clip's bounds as <see cref="ElementwiseOps.Expression"/> reads them ("min", "max"; infinite where none is given):
    /// from its inputs <paramref name="lo"/> and <paramref name="hi"/> from opset 11, else from its attributes.
    /// </summary>
    private Func<string, double, double> ClipBounds(HostTensor? lo, HostTensor? hi, NodeAttributes attrs) => ClipBounds(_model.Opset, lo, hi, attrs);

    /// <summary>See <see cref="ClipBounds(HostTensor?, HostTensor?, NodeAttributes)"/>, for a model of opset <paramref name="opset"/>.</summary>
    internal static Func<string, double, double> ClipBounds(long opset, HostTensor? lo, HostTensor? hi, NodeAttributes attrs) => opset >= 11
        ? (name, fallback) => name switch
        {
            "min" => lo is null ? double.NegativeInfinity : lo[0],
            "max" => hi is null ? double.PositiveInfinity : hi[0],
            _ => fallback,
        }
        : (name, fallback) => name switch
        {
            "min" => attrs.Float("min", double.NegativeInfinity),
            "max" => attrs.Float("max", double.PositiveInfinity),
            _ => fallback,
        };

    /// <summary>2 or 3 when <paramref name="exponent"/> is that one-element constant and broadcasting it leaves a floating-point <paramref name="x"/>'s shape as it is; else null.</summary>
    private static int? SmallPower(PlanValue x, PlanValue exponent) =>
        x.Type.IsFloatingPoint() && exponent.Constant is { Count: 1 } e && e[0] is 2 or 3 && exponent.Shape.Length <= x.Shape.Length ? (int)e[0] : null;
}
