using Batchwise.Onnx;

namespace Batchwise.Operators;

/// <summary>
/// One value during shape inference: element type, shape (dimensions may be symbolic, e.g. 2*batch), the elements of a
/// small integer tensor when they are known symbolically (a Shape of [batch, 3] is [batch, 3]), and the whole value when
/// it is known exactly (constants and everything folded from them).
/// </summary>
internal sealed record SymbolicValue(ElementType Type, DimExpr[] Shape, DimExpr[]? Data = null, HostTensor? Value = null)
{
    /// <summary>A value known exactly.</summary>
    public static SymbolicValue Of(HostTensor value) => new(
        value.Type,
        [.. value.Shape.Select(DimExpr.Of)],
        value.IsFloat ? null : [.. value.Ints!.Select(DimExpr.Of)],
        value);

    /// <summary>A value of known type and concrete shape, its elements unknown.</summary>
    public static SymbolicValue OfShape(ElementType type, IEnumerable<long> shape) => new(type, [.. shape.Select(DimExpr.Of)]);

    /// <summary>The whole value when known exactly: a folded value, or integer elements all known as numbers.</summary>
    public HostTensor? Known => Value ?? (Data is { } d && IsConcrete && d.All(x => x.IsConcrete) && d.Length == Count && !Type.IsFloatingPoint() && Type is not (ElementType.Undefined or ElementType.String)
        ? HostTensor.OfInts(Type, ConcreteShape, [.. d.Select(x => HostTensor.Wrap(Type, x.Value))])
        : null);

    /// <summary>The same type and shape with nothing known about the elements.</summary>
    public SymbolicValue ShapeOnly => this with { Data = null, Value = null };

    /// <summary>True when every dimension is a number.</summary>
    public bool IsConcrete => Shape.All(d => d.IsConcrete);

    /// <summary>The dimensions as numbers; throws when one is symbolic.</summary>
    public long[] ConcreteShape => [.. Shape.Select(d => d.Value)];

    /// <summary>Element count, or long.MaxValue while a dimension is symbolic.</summary>
    public long Count => IsConcrete ? Shape.Aggregate(1L, (a, d) => checked(a * d.Value)) : long.MaxValue;
}

/// <summary>A value with a concrete shape and, when known on the host, its elements (what engines pass to the registry).</summary>
/// <param name="Type">Element type.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Value">The elements, when known on the host.</param>
public sealed record ConcreteValue(ElementType Type, long[] Shape, HostTensor? Value = null)
{
    /// <summary>A value known on the host.</summary>
    public static ConcreteValue Of(HostTensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return new(value.Type, value.Shape, value);
    }

    internal SymbolicValue ToSymbolic() => Value is not null ? SymbolicValue.Of(Value) : SymbolicValue.OfShape(Type, Shape);
}
