using System.Runtime.InteropServices;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A tensor whose values are known when a plan is built (initializers, constants, shapes and what folds from them).
/// Integers and bools are held as longs, floating point values as doubles.
/// </summary>
internal sealed class HostTensor
{
    public HostTensor(ElementType type, long[] shape, long[]? ints, double[]? floats)
    {
        Type = type;
        Shape = shape;
        Ints = ints;
        Floats = floats;
        if (IsFloat ? floats is null : ints is null)
        {
            throw new ArgumentException("values of the wrong kind for " + type);
        }
    }

    public ElementType Type { get; }

    public long[] Shape { get; }

    public long[]? Ints { get; }

    public double[]? Floats { get; }

    /// <summary>
    /// True for values the session owns: initializers and what is derived from them alone (BN-folded or reordered
    /// weights, folded constants), made once and uploaded once for every plan; other folded values belong to one plan.
    /// </summary>
    public bool IsInitializer { get; set; }

    public bool IsFloat => Type.IsFloatingPoint();

    public long Count => Tensor.ElementCountOf(Shape);

    public static HostTensor OfInts(ElementType type, long[] shape, long[] values) => new(type, shape, values, null);

    public static HostTensor OfFloats(ElementType type, long[] shape, double[] values) => new(type, shape, null, values);

    public static HostTensor Int64s(params long[] values) => OfInts(ElementType.Int64, [values.Length], values);

    public static HostTensor Create(ElementType type, long[] shape, Func<long, double> value)
    {
        var n = Tensor.ElementCountOf(shape);
        if (type.IsFloatingPoint())
        {
            var f = new double[n];
            for (var i = 0; i < n; i++)
            {
                f[i] = value(i);
            }

            return OfFloats(type, shape, f);
        }

        var v = new long[n];
        for (var i = 0; i < n; i++)
        {
            v[i] = (long)value(i);
        }

        return OfInts(type, shape, v);
    }

    public double this[long i] => IsFloat ? Floats![i] : Ints![i];

    public long Int(long i) => IsFloat ? (long)Floats![i] : Ints![i];

    public long[] AsLongs() => IsFloat ? Floats!.Select(f => (long)f).ToArray() : (long[])Ints!.Clone();

    public double[] AsDoubles() => IsFloat ? (double[])Floats!.Clone() : Ints!.Select(v => (double)v).ToArray();

    public HostTensor WithShape(long[] shape) => new(Type, shape, Ints, Floats);

    /// <summary>Converts to another element type with ONNX Cast semantics (truncation toward zero for float to int).</summary>
    public HostTensor CastTo(ElementType type)
    {
        if (type.IsFloatingPoint())
        {
            var d = AsDoubles();
            if (type == ElementType.Float)
            {
                for (var i = 0; i < d.Length; i++)
                {
                    d[i] = (float)d[i];
                }
            }

            return OfFloats(type, Shape, d);
        }

        if (type == ElementType.Bool)
        {
            return OfInts(type, Shape, Enumerable.Range(0, (int)Count).Select(i => this[i] != 0 ? 1L : 0L).ToArray());
        }

        return OfInts(type, Shape, AsLongs());
    }

    /// <summary>The little-endian bytes in the element type (what is uploaded to the device).</summary>
    public byte[] ToBytes()
    {
        var n = (int)Count;
        var bytes = new byte[n * Type.SizeOf()];
        switch (Type)
        {
            case ElementType.Float: { var s = MemoryMarshal.Cast<byte, float>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = (float)Floats![i]; } break; }
            case ElementType.Double: MemoryMarshal.AsBytes(Floats.AsSpan()).CopyTo(bytes); break;
            case ElementType.Float16: { var s = MemoryMarshal.Cast<byte, Half>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = (Half)Floats![i]; } break; }
            case ElementType.Int64 or ElementType.UInt64: MemoryMarshal.AsBytes(Ints.AsSpan()).CopyTo(bytes); break;
            case ElementType.Int32 or ElementType.UInt32: { var s = MemoryMarshal.Cast<byte, int>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = unchecked((int)Ints![i]); } break; }
            case ElementType.Int16 or ElementType.UInt16: { var s = MemoryMarshal.Cast<byte, short>(bytes.AsSpan()); for (var i = 0; i < n; i++) { s[i] = unchecked((short)Ints![i]); } break; }
            case ElementType.Int8 or ElementType.UInt8 or ElementType.Bool: for (var i = 0; i < n; i++) { bytes[i] = unchecked((byte)Ints![i]); } break;
            default: throw new BatchwiseException($"Tensors of {Type.ShortName()} are not supported by the cuda engine yet", "Use float32 or integer tensors.");
        }

        return bytes;
    }

    /// <summary>Reads a host tensor from an engine tensor.</summary>
    public static HostTensor FromTensor(Tensor t)
    {
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
        var type = (ElementType)p.DataType;
        var shape = p.Dims.ToArray();
        var n = (int)Tensor.ElementCountOf(shape);
        var raw = p.RawData.Span;
        if (type == ElementType.String || type == ElementType.Undefined)
        {
            throw new BatchwiseException($"Tensor '{p.Name}' of type {type} is not supported by the cuda engine", "Use numeric tensors.");
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

        return type switch
        {
            ElementType.Float => OfFloats(type, shape, p.FloatData.Select(f => (double)f).ToArray()),
            ElementType.Double => OfFloats(type, shape, p.DoubleData.ToArray()),
            ElementType.Float16 or ElementType.BFloat16 => OfFloats(type, shape, p.Int32Data.Select(b => type == ElementType.Float16 ? (double)BitConverter.UInt16BitsToHalf((ushort)b) : BitConverter.Int32BitsToSingle(b << 16)).ToArray()),
            ElementType.Int64 => OfInts(type, shape, p.Int64Data.ToArray()),
            ElementType.UInt64 or ElementType.UInt32 => OfInts(type, shape, p.Uint64Data.Select(u => unchecked((long)u)).ToArray()),
            _ => OfInts(type, shape, p.Int32Data.Select(i => (long)i).ToArray()),
        } is var result && result.Count == n ? result : throw new BatchwiseException($"Tensor '{p.Name}' has the wrong number of values for shape {Tensor.ShapeText(shape)}", "Re-export the model.");
    }

    /// <summary>Converts to an engine tensor (graph outputs that folded to constants).</summary>
    public Tensor ToTensor() => new(Type, (long[])Shape.Clone(), ToBytes());
}
