using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>Typed access to a node's attributes; absent ones read the registry's default for the node's opset, or the fallback given.</summary>
public sealed class NodeAttributes
{
    private readonly Dictionary<string, OnnxProto.AttributeProto> _byName;
    private readonly IReadOnlyList<AttributeSpec> _specs;
    private readonly string _label;

    /// <summary>Attributes of <paramref name="node"/> with no registry defaults (callers give fallbacks).</summary>
    public NodeAttributes(OnnxProto.NodeProto node)
        : this(node, null, 0)
    {
    }

    /// <summary>Attributes of <paramref name="node"/> with the defaults <paramref name="schema"/> gives at <paramref name="opset"/>.</summary>
    public NodeAttributes(OnnxProto.NodeProto node, OperatorSchema? schema, long opset)
    {
        ArgumentNullException.ThrowIfNull(node);
        _byName = new Dictionary<string, OnnxProto.AttributeProto>(StringComparer.Ordinal);
        foreach (var a in node.Attribute)
        {
            _byName[a.Name] = a;
        }

        _specs = schema?.AttributesAt(opset) ?? [];
        _label = string.IsNullOrEmpty(node.Name) ? node.OpType : $"{node.OpType} node '{node.Name}'";
    }

    /// <summary>True when the node gives the attribute.</summary>
    public bool Has(string name) => _byName.ContainsKey(name);

    /// <summary>An int attribute, or <paramref name="fallback"/>.</summary>
    public long Int(string name, long fallback) => _byName.TryGetValue(name, out var a) ? a.I : fallback;

    /// <summary>A float attribute, or <paramref name="fallback"/>.</summary>
    public double Float(string name, double fallback) => _byName.TryGetValue(name, out var a) ? a.F : fallback;

    /// <summary>A string attribute, or <paramref name="fallback"/>.</summary>
    public string String(string name, string fallback) => _byName.TryGetValue(name, out var a) ? a.S.ToStringUtf8() : fallback;

    /// <summary>An ints attribute, or null.</summary>
    public long[]? Ints(string name) => _byName.TryGetValue(name, out var a) ? a.Ints.ToArray() : null;

    /// <summary>A floats attribute, or null.</summary>
    public double[]? Floats(string name) => _byName.TryGetValue(name, out var a) ? a.Floats.Select(f => (double)f).ToArray() : null;

    /// <summary>A strings attribute, or null.</summary>
    public string[]? Strings(string name) => _byName.TryGetValue(name, out var a) ? a.Strings.Select(s => s.ToStringUtf8()).ToArray() : null;

    /// <summary>The raw attribute, or null.</summary>
    public OnnxProto.AttributeProto? Get(string name) => _byName.GetValueOrDefault(name);

    /// <summary>An int attribute or its registry default; throws naming the node when it has neither.</summary>
    public long Int(string name) => _byName.TryGetValue(name, out var a) ? a.I : Default<long>(name);

    /// <summary>A float attribute or its registry default.</summary>
    public double Float(string name) => _byName.TryGetValue(name, out var a) ? a.F : Default<float>(name);

    /// <summary>A string attribute or its registry default.</summary>
    public string String(string name) => _byName.TryGetValue(name, out var a) ? a.S.ToStringUtf8() : Default<string>(name);

    /// <summary>An ints attribute, its registry default, or null when neither exists.</summary>
    public long[]? IntsOrDefault(string name) => _byName.TryGetValue(name, out var a) ? a.Ints.ToArray() : Spec(name)?.Default as long[];

    private AttributeSpec? Spec(string name) => _specs.FirstOrDefault(s => s.Name == name);

    private T Default<T>(string name) => Spec(name) switch
    {
        { Default: T value } => value,
        { Required: true } => throw new BatchwiseException($"{_label} lacks its required attribute '{name}'", "Re-export the model; ONNX requires it."),
        _ => throw new BatchwiseException($"{_label} has no attribute '{name}' and ONNX gives it no default", "Re-export the model with the attribute set."),
    };
}
