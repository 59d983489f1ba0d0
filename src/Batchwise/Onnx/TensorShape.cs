using System.Globalization;

namespace Batchwise.Onnx;

/// <summary>The inferred type and shape of one value: element type and dimensions, each fixed or symbolic (e.g. batch, 2*batch).</summary>
public sealed record TensorShape(ElementType ElementType, IReadOnlyList<Dim> Dims)
{
    /// <summary>Number of dimensions.</summary>
    public int Rank => Dims.Count;

    /// <summary>True when every dimension is a number.</summary>
    public bool IsConcrete => Dims.All(d => !d.IsDynamic);

    /// <summary>Element count, or null while a dimension is symbolic.</summary>
    public long? ElementCount => IsConcrete ? Dims.Aggregate(1L, (a, d) => checked(a * d.Value!.Value)) : null;

    /// <summary>Bytes, or null while a dimension is symbolic or the type has no fixed size.</summary>
    public long? ByteCount => ElementCount is { } n && ElementType is not (ElementType.Undefined or ElementType.String) ? n * ElementType.SizeOf() : null;

    /// <summary>The dimensions as numbers; throws naming the symbolic ones.</summary>
    public long[] ToArray() => IsConcrete
        ? [.. Dims.Select(d => d.Value!.Value)]
        : throw new BatchwiseException($"Shape {this} still has symbolic dimensions ({string.Join(", ", Dims.Where(d => d.IsDynamic))})", "Give every symbolic dimension a value (e.g. --shape or --batch-sizes).");

    /// <summary>Creates a concrete shape.</summary>
    public static TensorShape Of(ElementType type, params long[] dims) => new(type, [.. dims.Select(Dim.Fixed)]);

    /// <inheritdoc/>
    public bool Equals(TensorShape? other) => other is not null && other.ElementType == ElementType && other.Dims.SequenceEqual(Dims);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(ElementType, string.Join(",", Dims));

    /// <summary>Dimensions as text, e.g. [batch, 3, 224, 224].</summary>
    public string DimsText => "[" + string.Join(", ", Dims.Select(d => d.ToString())) + "]";

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{ElementType.ShortName()} {DimsText}");
}
