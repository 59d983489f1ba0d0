namespace Batchwise.Onnx;

/// <summary>One dimension of a declared shape: a fixed size, a named symbol, or unknown.</summary>
public readonly record struct Dim(long? Value, string? Symbol)
{
    /// <summary>A fixed-size dimension.</summary>
    public static Dim Fixed(long value) => new(value, null);

    /// <summary>A symbolic (dynamic) dimension.</summary>
    public static Dim Symbolic(string symbol) => new(null, symbol);

    /// <summary>True when the size is not fixed in the model.</summary>
    public bool IsDynamic => Value is null;

    /// <inheritdoc/>
    public override string ToString() => Value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? (string.IsNullOrEmpty(Symbol) ? "?" : Symbol);
}

/// <summary>A named graph input or output: element type and declared (possibly symbolic) shape.</summary>
public sealed record TensorSpec(string Name, ElementType ElementType, IReadOnlyList<Dim> Shape)
{
    /// <summary>Shape as text, e.g. [batch, 3, 224, 224].</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>True when any dimension is dynamic.</summary>
    public bool IsDynamic => Shape.Any(d => d.IsDynamic);

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {ElementType.ShortName()} {ShapeText}";
}
