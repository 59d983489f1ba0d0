using System.Runtime.InteropServices;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Operators;

/// <summary>
/// A tensor whose values are known on the host (initializers, constants, shapes and what folds from them): the host
/// reference implementation of every registry operator computes on these. Integers and bools are held as longs,
/// floating point values as doubles rounded to their element type.
/// </summary>
public sealed class HostTensor
{
    private readonly double[]? _floats;
    private readonly Lazy<double[]>? _deferred;

    /// <summary>Wraps values; <paramref name="ints"/> for integer and bool types, <paramref name="floats"/> for floating point.</summary>
    public HostTensor(ElementType type, long[] shape, long[]? ints, double[]? floats)
    {
        ArgumentNullException.ThrowIfNull(shape);
        Type = type;
        Shape = shape;
        Ints = ints;
        _floats = floats;
        if (IsFloat ? floats is null : ints is null)
        {
            throw new ArgumentException("values of the wrong kind for " + type);
        }
    }

    private HostTensor(ElementType type, long[] shape, Lazy<double[]> deferred)
    {
        Type = type;
        Shape = shape;
        _deferred = deferred;
    }

    /// <summary>Element type.</summary>
    public ElementType Type { get; }

    /// <summary>Shape (row-major).</summary>
    public long[] Shape { get; }

    /// <summary>Values of an integer or bool tensor.</summary>
    public long[]? Ints { get; }

    /// <summary>Values of a floating point tensor (a deferred tensor's are made on this first read).</summary>
    public double[]? Floats => _floats ?? _deferred?.Value;

    /// <summary>
    /// False for a deferred tensor whose values nobody has read yet (<see cref="Deferred"/>): its type and shape are
    /// known, its values not made.
    /// </summary>
    public bool HasValuesMade => _deferred is not { IsValueCreated: false };

    /// <summary>
    /// True for values the session owns: initializers and what is derived from them alone (BN-folded or reordered
    /// weights, folded constants), made once and uploaded once for every plan; other folded values belong to one plan.
    /// </summary>
    public bool IsInitializer { get; set; }

    /// <summary>True for floating point element types.</summary>
    public bool IsFloat => Type.IsFloatingPoint();

    /// <summary>Number of elements.</summary>
    public long Count => Tensor.ElementCountOf(Shape);

    /// <summary>An integer or bool tensor.</summary>
    public static HostTensor OfInts(ElementType type, long[] shape, long[] values) => new(type, shape, values, null);

    /// <summary>A floating point tensor.</summary>
    public static HostTensor OfFloats(ElementType type, long[] shape, double[] values) => new(type, shape, null, values);

    /// <summary>
    /// A floating point tensor whose values are made by <paramref name="values"/> when first read (once, thread-safe):
    /// a weight that may never be needed on the host (a saved engine carries its device bytes) costs nothing until then.
    /// </summary>
    public static HostTensor Deferred(ElementType type, long[] shape, Func<double[]> values)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(values);
        if (!type.IsFloatingPoint())
        {
            throw new ArgumentException("only floating point values are deferred, not " + type);
        }

        var count = Tensor.ElementCountOf(shape);
        return new HostTensor(type, shape, new Lazy<double[]>(() =>
        {
            var made = values();
            return made.LongLength == count ? made : throw new InvalidOperationException($"deferred values of {type.ShortName()} {Tensor.ShapeText(shape)} came as {made.LongLength} elements");
        }, LazyThreadSafetyMode.ExecutionAndPublication));
    }

    /// <summary>A 1-D int64 tensor.</summary>
    public static HostTensor Int64s(params long[] values) => OfInts(ElementType.Int64, [values.Length], values);

    /// <summary>A scalar of the given type.</summary>
    public static HostTensor Scalar(ElementType type, double value) => Create(type, [], _ => value);

    /// <summary>A tensor whose element i is <paramref name="value"/>(i), rounded or wrapped to the element type.</summary>
    public static HostTensor Create(ElementType type, long[] shape, Func<long, double> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var n = Tensor.ElementCountOf(shape);
        if (type.IsFloatingPoint())
        {
            var f = new double[n];
            for (var i = 0; i < n; i++)
            {
                f[i] = Round(type, value(i));
            }

            return OfFloats(type, shape, f);
        }

        var v = new long[n];
        for (var i = 0; i < n; i++)
        {
            v[i] = Wrap(type, ToInteger(value(i)));
        }

        return OfInts(type, shape, v);
    }

    /// <summary>An integer tensor whose element i is <paramref name="value"/>(i), wrapped to the element type.</summary>
    public static HostTensor CreateInts(ElementType type, long[] shape, Func<long, long> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var n = Tensor.ElementCountOf(shape);
        var v = new long[n];
        for (var i = 0; i < n; i++)
        {
            v[i] = Wrap(type, value(i));
        }

        return OfInts(type, shape, v);
    }

    /// <summary>Element i as a double.</summary>
    public double this[long i] => IsFloat ? Floats![i] : Ints![i];

    /// <summary>Element i as a long (floating point values truncated toward zero).</summary>
    public long Int(long i) => IsFloat ? ToInteger(Floats![i]) : Ints![i];

    /// <summary>All elements as longs.</summary>
    public long[] AsLongs() => IsFloat ? Floats!.Select(ToInteger).ToArray() : (long[])Ints!.Clone();

    /// <summary>All elements as doubles.</summary>
    public double[] AsDoubles() => IsFloat ? (double[])Floats!.Clone() : Ints!.Select(v => (double)v).ToArray();

    /// <summary>The same values at another shape of the same element count.</summary>
    public HostTensor WithShape(long[] shape) => _floats is null && _deferred is not null ? new(Type, shape, _deferred) : new(Type, shape, Ints, Floats);

    /// <summary>Converts to another element type with ONNX Cast semantics (truncation toward zero for float to int, wrapping for narrower integers).</summary>
    public HostTensor CastTo(ElementType type)
    {
        if (type.IsFloatingPoint())
        {
            var d = AsDoubles();
            if (Type == ElementType.UInt64 && !IsFloat)
            {
                for (var i = 0; i < d.Length; i++)
                {
                    d[i] = unchecked((ulong)Ints![i]);
                }
            }

            for (var i = 0; i < d.Length; i++)
            {
                d[i] = Round(type, d[i]);
            }

            return OfFloats(type, Shape, d);
        }

        var n = (int)Count;
        var v = new long[n];
        for (var i = 0; i < n; i++)
        {
            v[i] = type == ElementType.Bool ? (this[i] != 0 ? 1 : 0) : Wrap(type, Int(i));
        }

        return OfInts(type, Shape, v);
    }

    /// <summary>A value rounded to what the element type can hold (float32, float16 and bfloat16 round to nearest even).</summary>
    public static double Round(ElementType type, double v) => type switch
    {
        ElementType.Float => (float)v,
        ElementType.Float16 => (double)(Half)v,
        ElementType.BFloat16 => ToBFloat16(v),
        _ => v,
    };

    /// <summary>An integer wrapped to the element type's width, as a C cast does (bool: nonzero is 1).</summary>
    public static long Wrap(ElementType type, long v) => type switch
    {
        ElementType.Int8 => unchecked((sbyte)v),
        ElementType.UInt8 => unchecked((byte)v),
        ElementType.Int16 => unchecked((short)v),
        ElementType.UInt16 => unchecked((ushort)v),
        ElementType.Int32 => unchecked((int)v),
        ElementType.UInt32 => unchecked((uint)v),
        ElementType.Bool => v != 0 ? 1 : 0,
        _ => v,
    };

    /// <summary>A double truncated toward zero to a long (NaN to 0, saturating at the long range).</summary>
    public static long ToInteger(double v) =>
        double.IsNaN(v) ? 0 : v >= 9.2233720368547758e18 ? long.MaxValue : v <= -9.2233720368547758e18 ? long.MinValue : (long)v;

    private static double ToBFloat16(double v)
    {
        var f = (float)v;
        if (float.IsNaN(f))
        {
            return f;
        }

        var bits = BitConverter.SingleToUInt32Bits(f);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }

    /// <summary>The little-endian bytes in the element type (what is uploaded to a device or stored in a model).</summary>
    public byte[] ToBytes()
    {
        var n = (int)Count;
        var bytes = new byte[n * Type.SizeOf()];
        switch (Type)
        {
            case ElementType.Float: { var s = MemoryMarshal.Cast<byte, float>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = (float)Floats![i]; } break; }
            case ElementType.Double: MemoryMarshal.AsBytes(Floats.AsSpan()).CopyTo(bytes); break;
            case ElementType.Float16: { var s = MemoryMarshal.Cast<byte, Half>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = (Half)Floats![i]; } break; }
            case ElementType.BFloat16: { var s = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)ToBFloat16(Floats![i])) >> 16); } break; }
            case ElementType.Int64 or ElementType.UInt64: MemoryMarshal.AsBytes(Ints.AsSpan()).CopyTo(bytes); break;
            case ElementType.Int32 or ElementType.UInt32: { var s = MemoryMarshal.Cast<byte, int>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = unchecked((int)Ints![i]); } break; }
            case ElementType.Int16 or ElementType.UInt16: { var s = MemoryMarshal.Cast<byte, short>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = unchecked((short)Ints![i]); } break; }
            case ElementType.Int8 or ElementType.UInt8 or ElementType.Bool: for (var i = 0; i < n; i++) { bytes[i] = unchecked((byte)Ints![i]); } break;
            default: throw new BatchwiseException($"Tensors of {Type.ShortName()} cannot be held as bytes", "Use numeric or bool tensors.");
        }

        return bytes;
    }

    /// <summary>Reads a host tensor from an engine tensor.</summary>
    public static HostTensor FromTensor(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (t.ElementType.IsFloatingPoint())
        {
            return OfFloats(t.ElementType, (long[])t.Shape.Clone(), t.ToDoubles());
        }

        var n = (int)t.ElementCount;
        var v = new long[n];
        switch (t.ElementType)
        {
            case ElementType.Int64: t.AsSpan<long>().CopyTo(v); break;
            case ElementType.UInt64: { var s = t.AsSpan<ulong>(); for (var i = 0; i < n; i++) { v[i] = unchecked((long)s[i]); } break; }
            default: { var d = t.ToDoubles(); for (var i = 0; i < n; i++) { v[i] = (long)d[i]; } break; }
        }

        return OfInts(t.ElementType, (long[])t.Shape.Clone(), v);
    }

    /// <summary>Reads an ONNX TensorProto (raw or typed data).</summary>
    public static HostTensor FromProto(OnnxProto.TensorProto p)
    {
        ArgumentNullException.ThrowIfNull(p);
        var type = (ElementType)p.DataType;
        var shape = p.Dims.ToArray();
        var n = (int)Tensor.ElementCountOf(shape);
        var raw = p.RawData.Span;
        if (type is ElementType.String or ElementType.Undefined || !Enum.IsDefined(type))
        {
            throw new BatchwiseException($"Tensor '{p.Name}' holds {((ElementType)p.DataType).ShortName()} values, which Batchwise does not compute with", "Use numeric or bool tensors.");
        }

        if (!raw.IsEmpty)
        {
            if (raw.Length != n * type.SizeOf())
            {
                throw new BatchwiseException($"Tensor '{p.Name}' has {raw.Length} bytes of raw data for shape {Tensor.ShapeText(shape)} of {type.ShortName()}", "Re-export the model.");
            }

            var t = new Tensor(type, shape, raw.ToArray());
            return FromTensor(t);
        }

        if (SavedEngineFile.IsLeftOut(p))
        {
            throw new WeightsLeftOutException($"Initializer '{p.Name}' ({type.ShortName()} {Tensor.ShapeText(shape)}) was read on the host, and the saved engine carries only its device-ready form", "Rebuild the saved engine with `batchwise build` (it keeps the weights a plan reads on the host), or give the original .onnx model.");
        }

        if (!HasValues(p))
        {
            throw new BatchwiseException($"Tensor '{p.Name}' of shape {Tensor.ShapeText(shape)} holds no values", "Re-export the model with its weights.");
        }

        return type switch
        {
            ElementType.Float => OfFloats(type, shape, p.FloatData.Select(f => (double)f).ToArray()),
            ElementType.Double => OfFloats(type, shape, p.DoubleData.ToArray()),
            ElementType.Float16 or ElementType.BFloat16 => OfFloats(type, shape, p.Int32Data.Select(b => type == ElementType.Float16 ? (double)BitConverter.UInt16BitsToHalf((ushort)b) : BitConverter.Int32BitsToSingle(b << 16)).ToArray()),
            ElementType.Int64 => OfInts(type, shape, p.Int64Data.ToArray()),
            ElementType.UInt64 or ElementType.UInt32 => OfInts(type, shape, p.Uint64Data.Select(u => unchecked((long)u)).ToArray()),
            _ => OfInts(type, shape, p.Int32Data.Select(i => (long)i).ToArray()),
        };
    }

    /// <summary>True when a TensorProto carries as many values as its shape holds (a model's structure may declare weights by shape only).</summary>
    public static bool HasValues(OnnxProto.TensorProto p)
    {
        ArgumentNullException.ThrowIfNull(p);
        var n = Tensor.ElementCountOf(p.Dims);
        var type = (ElementType)p.DataType;
        if (!p.RawData.IsEmpty)
        {
            return type is not (ElementType.String or ElementType.Undefined) && Enum.IsDefined(type) && p.RawData.Length == n * type.SizeOf();
        }

        long count = type switch
        {
            ElementType.Float => p.FloatData.Count,
            ElementType.Double => p.DoubleData.Count,
            ElementType.Int64 => p.Int64Data.Count,
            ElementType.UInt64 or ElementType.UInt32 => p.Uint64Data.Count,
            _ => p.Int32Data.Count,
        };
        return count == n;
    }

    /// <summary>Converts to an engine tensor.</summary>
    public Tensor ToTensor() => new(Type, (long[])Shape.Clone(), ToBytes());

    /// <summary>Converts to an ONNX TensorProto named <paramref name="name"/>.</summary>
    public OnnxProto.TensorProto ToProto(string name)
    {
        var t = new OnnxProto.TensorProto { Name = name, DataType = (int)Type, RawData = Google.Protobuf.ByteString.CopyFrom(ToBytes()) };
        t.Dims.AddRange(Shape);
        return t;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Type.ShortName()} {Tensor.ShapeText(Shape)}";
}
