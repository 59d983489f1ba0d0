using System.Globalization;

namespace Batchwise.Operators;

/// <summary>The type of an ONNX attribute.</summary>
public enum AttributeKind
{
    /// <summary>One integer.</summary>
    Int,

    /// <summary>One float.</summary>
    Float,

    /// <summary>One string.</summary>
    String,

    /// <summary>A list of integers.</summary>
    Ints,

    /// <summary>A list of floats.</summary>
    Floats,

    /// <summary>A list of strings.</summary>
    Strings,

    /// <summary>A tensor.</summary>
    Tensor,

    /// <summary>A sparse tensor.</summary>
    SparseTensor,

    /// <summary>A subgraph.</summary>
    Graph,

    /// <summary>A type.</summary>
    TypeProto,
}

/// <summary>One attribute of an operator: name, type, default, and the opsets in which it exists with that default.</summary>
/// <param name="Name">The attribute's name.</param>
/// <param name="Kind">Its type.</param>
/// <param name="Default">The value when absent: long, float, string, long[], float[] or string[]; null when there is none.</param>
/// <param name="Required">True when a node must give it.</param>
/// <param name="Since">First opset in which it exists with this default.</param>
/// <param name="Until">Last such opset (int.MaxValue: still current).</param>
public sealed record AttributeSpec(string Name, AttributeKind Kind, object? Default = null, bool Required = false, int Since = 1, int Until = int.MaxValue)
{
    /// <summary>True when the attribute exists (with this default) at <paramref name="opset"/>.</summary>
    public bool AppliesAt(long opset) => opset >= Since && opset <= Until;

    /// <inheritdoc/>
    public override string ToString() =>
        Name + ": " + Kind.ToString().ToLowerInvariant()
        + (Required ? " (required)" : Default switch
        {
            null => string.Empty,
            long[] a => $" = [{string.Join(", ", a)}]",
            float f => " = " + f.ToString(CultureInfo.InvariantCulture),
            _ => " = " + Convert.ToString(Default, CultureInfo.InvariantCulture),
        });
}

/// <summary>Short factories for attribute specifications, as the registry's records list them.</summary>
internal static class Attribute
{
    public static AttributeSpec Int(string name, long? value = null, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Int, value, required, since, until);

    public static AttributeSpec Float(string name, float? value = null, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Float, value, required, since, until);

    public static AttributeSpec String(string name, string? value = null, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.String, value, required, since, until);

    public static AttributeSpec Ints(string name, long[]? value = null, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Ints, value, required, since, until);

    public static AttributeSpec Floats(string name, float[]? value = null, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Floats, value, required, since, until);

    public static AttributeSpec Strings(string name, string[]? value = null, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Strings, value, required, since, until);

    public static AttributeSpec Tensor(string name, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Tensor, null, required, since, until);

    public static AttributeSpec SparseTensor(string name, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.SparseTensor, null, required, since, until);

    public static AttributeSpec Graph(string name, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.Graph, null, required, since, until);

    public static AttributeSpec TypeProto(string name, bool required = false, int since = 1, int until = int.MaxValue) => new(name, AttributeKind.TypeProto, null, required, since, until);
}
