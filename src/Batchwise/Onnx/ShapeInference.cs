using Batchwise.Operators;
using OnnxProto = Onnx;

namespace Batchwise.Onnx;

/// <summary>A node whose output shapes could not be inferred, and why (an unknown operator, or an input that depends on one).</summary>
/// <param name="Index">The node's position in the graph.</param>
/// <param name="Name">The node's name (or op type and index when unnamed).</param>
/// <param name="OpType">The operator, domain-qualified outside the default domain.</param>
/// <param name="Reason">Why, in one line.</param>
public sealed record UnresolvedNode(int Index, string Name, string OpType, string Reason);

/// <summary>The inferred type and shape of every value of a graph (inputs, initializers, node outputs).</summary>
public sealed class ShapeInferenceResult
{
    private readonly Dictionary<string, TensorShape> _shapes;
    private readonly Dictionary<string, long[]> _constants;
    private readonly HashSet<string> _known;

    internal ShapeInferenceResult(Dictionary<string, TensorShape> shapes, Dictionary<string, long[]> constants, HashSet<string> known, IReadOnlyList<UnresolvedNode> unresolved)
    {
        _shapes = shapes;
        _constants = constants;
        _known = known;
        Unresolved = unresolved;
    }

    /// <summary>Nodes left without shapes (only when inference tolerates them; see <see cref="ShapeInference.Run(OnnxModel, IReadOnlyDictionary{string, long}?, bool)"/>).</summary>
    public IReadOnlyList<UnresolvedNode> Unresolved { get; }

    /// <summary>True when the value has an inferred shape.</summary>
    public bool Has(string name) => _shapes.ContainsKey(name);

    /// <summary>Every value's shape, by value name.</summary>
    public IReadOnlyDictionary<string, TensorShape> Values => _shapes;

    /// <summary>The shape of one value; throws naming it when the graph has no such value.</summary>
    public TensorShape this[string name] => _shapes.TryGetValue(name, out var s)
        ? s
        : throw new BatchwiseException($"The graph has no value named '{name}'", "Check the name against the model's inputs, outputs and node outputs.");

    /// <summary>The values of an integer tensor known before running (shape arithmetic: Shape, Gather, Concat...), when every element is a number.</summary>
    public bool TryGetConstant(string name, out long[] values) => _constants.TryGetValue(name, out values!);

    /// <summary>True when the value is known before running (a small constant, or folded from constants and shapes).</summary>
    public bool IsKnown(string name) => _known.Contains(name) || _constants.ContainsKey(name);
}

/// <summary>
/// Infers the element type and shape of every value in a graph from its input shapes, with symbolic dimensions
/// (batch, seq) carried through as products (2*batch). Each operator's inference is its record in the
/// <see cref="OperatorRegistry"/>; small values computable from constants and shapes are folded on the way by the
/// records' host implementations, so Reshape, Expand, Pad and Resize targets resolve whatever computes them.
/// </summary>
public static class ShapeInference
{
    /// <summary>Largest value folded while inferring (elements); weights are never decoded.</summary>
    public const int MaxFoldedElements = 1 << 16;

    /// <summary>The operators shape inference understands (domain-qualified outside the default domain).</summary>
    public static IReadOnlyCollection<string> SupportedOperators { get; } =
        [.. OperatorRegistry.All.Where(s => s.HasShapeInference).Select(s => s.QualifiedName)];

    /// <summary>
    /// Infers every value's shape. Symbolic input dimensions named in <paramref name="dimValues"/> (e.g. batch=8)
    /// become numbers; the others stay symbols.
    /// </summary>
    public static ShapeInferenceResult Run(OnnxModel model, IReadOnlyDictionary<string, long>? dimValues = null) => Run(model, dimValues, tolerateUnresolved: false);

    /// <summary>
    /// Infers every value's shape; with <paramref name="tolerateUnresolved"/> a node Batchwise cannot infer (an unknown
    /// operator, a failing inference) and every node that reads its outputs are listed in
    /// <see cref="ShapeInferenceResult.Unresolved"/> and left without shapes, instead of failing the whole model.
    /// </summary>
    public static ShapeInferenceResult Run(OnnxModel model, IReadOnlyDictionary<string, long>? dimValues, bool tolerateUnresolved)
    {
        ArgumentNullException.ThrowIfNull(model);
        var unresolved = new List<UnresolvedNode>();
        var unresolvedProducers = new Dictionary<string, string>(StringComparer.Ordinal);
        dimValues ??= new Dictionary<string, long>();
        var values = new Dictionary<string, SymbolicValue>(StringComparer.Ordinal);
        foreach (var t in model.Graph.Initializer)
        {
            var type = (ElementType)t.DataType;
            values[t.Name] = t.ElementCount() <= MaxFoldedElements && type is not (ElementType.String or ElementType.Undefined) && HostTensor.HasValues(t)
                ? SymbolicValue.Of(HostTensor.FromProto(t))
                : new SymbolicValue(type, [.. t.Dims.Select(DimExpr.Of)]);
        }

        var initializerNames = model.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var input in model.Graph.Input.Where(i => !initializerNames.Contains(i.Name)))
        {
            var spec = OnnxModel.ToSpec(input);
            values[input.Name] = new SymbolicValue(spec.ElementType, [.. spec.Shape.Select((d, i) => DimExpr.FromDim(d, dimValues, $"{input.Name}_dim{i}"))]);
        }

        for (var index = 0; index < model.Graph.Node.Count; index++)
        {
            var node = model.Graph.Node[index];
            SymbolicValue[] outputs;
            if (tolerateUnresolved)
            {
                var blocked = node.Input.FirstOrDefault(i => i.Length > 0 && unresolvedProducers.ContainsKey(i));
                string? reason = blocked is not null ? $"reads '{blocked}' of {unresolvedProducers[blocked]}, which has no inferred shape" : null;
                outputs = [];
                if (reason is null)
                {
                    try
                    {
                        outputs = InferNode(model, node, values);
                    }
                    catch (BatchwiseException e)
                    {
                        reason = e.Message;
                    }
                }

                if (reason is not null)
                {
                    var label = Label(node);
                    unresolved.Add(new UnresolvedNode(index, string.IsNullOrEmpty(node.Name) ? $"{node.OpType}_{index}" : node.Name, QualifiedName(node), reason));
                    foreach (var o in node.Output.Where(o => o.Length > 0))
                    {
                        unresolvedProducers[o] = label;
                    }

                    continue;
                }
            }
            else
            {
                outputs = InferNode(model, node, values);
            }

            for (var i = 0; i < node.Output.Count && i < outputs.Length; i++)
            {
                if (!string.IsNullOrEmpty(node.Output[i]))
                {
                    values[node.Output[i]] = outputs[i];
                }
            }
        }

        var shapes = new Dictionary<string, TensorShape>(StringComparer.Ordinal);
        var constants = new Dictionary<string, long[]>(StringComparer.Ordinal);
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, v) in values)
        {
            shapes[name] = new TensorShape(v.Type, [.. v.Shape.Select(d => d.ToDim())]);
            if (v.Data is { } data && data.All(d => d.IsConcrete))
            {
                constants[name] = [.. data.Select(d => d.Value)];
            }

            if (v.Value is not null)
            {
                known.Add(name);
            }
        }

        return new ShapeInferenceResult(shapes, constants, known, unresolved);
    }

    private static string QualifiedName(OnnxProto.NodeProto node) =>
        OperatorRegistry.NormalizeDomain(node.Domain) is { Length: > 0 } d ? $"{d}.{node.OpType}" : node.OpType;

    private static string Label(OnnxProto.NodeProto node) => string.IsNullOrEmpty(node.Name) ? node.OpType : $"{node.OpType} node '{node.Name}'";

    private static SymbolicValue[] InferNode(OnnxModel model, OnnxProto.NodeProto node, Dictionary<string, SymbolicValue> values)
    {
        var domain = OperatorRegistry.NormalizeDomain(node.Domain);
        var opset = model.OpsetOf(domain);
        var schema = OperatorRegistry.Find(domain, node.OpType, opset);
        if (schema?.Infer is null)
        {
            var name = domain.Length == 0 ? node.OpType : $"{domain}.{node.OpType}";
            var why = OperatorRegistry.FindAny(domain, node.OpType) is { } other && other.HasShapeInference
                ? $" at opset {opset} (it exists in opsets {string.Join(", ", other.Versions)}{(other.RemovedIn is { } r ? $", removed in {r}" : string.Empty)})"
                : string.Empty;
            throw new BatchwiseException(
                $"Shape inference does not support the operator {name}{why} ({Label(node)})",
                $"Batchwise infers shapes for: {string.Join(", ", SupportedOperators.Order(StringComparer.Ordinal))}.");
        }

        var inputs = new SymbolicValue?[node.Input.Count];
        for (var i = 0; i < node.Input.Count; i++)
        {
            if (node.Input[i].Length == 0)
            {
                continue;
            }

            inputs[i] = values.TryGetValue(node.Input[i], out var v)
                ? v
                : throw new BatchwiseException($"Shape inference failed at {Label(node)}: input '{node.Input[i]}' has no inferred shape (is the graph topologically sorted?)", "Check the model with onnx.checker.check_model(model, full_check=True).");
        }

        var outputs = schema.Infer(new InferenceContext(node, schema, opset, inputs));
        return Fold(node, schema, opset, inputs, outputs);
    }

    /// <summary>Attaches values to the outputs when every input is known and the result is small (shape arithmetic, whatever operators compute it).</summary>
    private static SymbolicValue[] Fold(OnnxProto.NodeProto node, OperatorSchema schema, long opset, SymbolicValue?[] inputs, SymbolicValue[] outputs)
    {
        if (schema.Evaluate is null || (!schema.HasDataDependentShape && outputs.Any(o => !o.IsConcrete || o.Count > MaxFoldedElements)))
        {
            return outputs;
        }

        var concrete = new ConcreteValue?[inputs.Length];
        for (var i = 0; i < inputs.Length; i++)
        {
            if (inputs[i] is not { } v)
            {
                continue;
            }

            var known = v.Known;
            if (!v.IsConcrete || (known is null && !schema.ReadsOnlyShapes))
            {
                return outputs;
            }

            concrete[i] = new ConcreteValue(v.Type, v.ConcreteShape, known);
        }

        if (schema.HasDataDependentShape && concrete.Any(v => v is not null && v.Shape.Aggregate(1L, (a, b) => a * b) > MaxFoldedElements))
        {
            return outputs;
        }

        var folded = schema.Evaluate(new EvaluationContext(node, schema, opset, concrete));
        var result = (SymbolicValue[])outputs.Clone();
        for (var i = 0; i < result.Length && i < folded.Length; i++)
        {
            result[i] = SymbolicValue.Of(folded[i]);
        }

        return result;
    }
}
