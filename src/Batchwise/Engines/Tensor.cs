using System.Runtime.InteropServices;
using Batchwise.Onnx;

namespace Batchwise.Engines;

/// <summary>A dense host tensor: element type, shape and the bytes, pinned so engines can copy without staging.</summary>
public sealed class Tensor
{
    /// <summary>
    /// Wraps existing bytes (must be pinned if an engine is to use them without copying). A string tensor's bytes are
    /// its elements as the inference protocol serializes BYTES: each a 4-byte little-endian length, then its bytes.
    /// </summary>
    public Tensor(ElementType elementType, long[] shape, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        if (elementType == ElementType.String)
        {
            var count = CountStrings(data);
            if (count != ElementCountOf(shape))
            {
                throw new BatchwiseException($"Tensor of string {ShapeText(shape)} needs {ElementCountOf(shape)} length-prefixed elements, got {(count < 0 ? "malformed data" : count.ToString(System.Globalization.CultureInfo.InvariantCulture))}", "Serialize each element as a 4-byte little-endian length followed by its bytes.");
            }
        }
        else
        {
            var expected = ElementCountOf(shape) * elementType.SizeOf();
            if (data.LongLength != expected)
            {
                throw new BatchwiseException($"Tensor of {elementType.ShortName()} {ShapeText(shape)} needs {expected} bytes, got {data.LongLength}", "Check the data matches the shape.");
            }
        }

        ElementType = elementType;
        Shape = shape;
        _data = data;
    }

    /// <summary>
    /// A numeric tensor whose bytes stay where <paramref name="source"/> says (shared memory) until an engine reads them
    /// there (<see cref="IStagedRun.TryCopyInput"/>) or something reads <see cref="Data"/>, which copies them once into a
    /// new pinned array.
    /// </summary>
    public Tensor(ElementType elementType, long[] shape, TensorSource source)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(source);
        var expected = elementType == ElementType.String ? -1 : ElementCountOf(shape) * elementType.SizeOf();
        if (source.ByteCount != expected)
        {
            throw new BatchwiseException($"Tensor of {elementType.ShortName()} {ShapeText(shape)} needs {expected} bytes, its source holds {source.ByteCount}", "Check the data matches the shape (string tensors cannot stay in shared memory).");
        }

        ElementType = elementType;
        Shape = shape;
        Source = source;
    }

    /// <summary>Where the bytes are when they have not been copied into <see cref="Data"/> (null: they are in it).</summary>
    public TensorSource? Source { get; }

    /// <summary>The size of the bytes, without copying them out of a <see cref="Source"/>.</summary>
    public long ByteCount => _data?.LongLength ?? Source?.ByteCount ?? 0;

    /// <summary>Element type.</summary>
    public ElementType ElementType { get; }

    /// <summary>Shape (row-major).</summary>
    public long[] Shape { get; }

    /// <summary>The raw little-endian bytes (for a tensor with a <see cref="Source"/>: copied from it on first use).</summary>
    public byte[] Data => _data ?? Materialize();

    private byte[]? _data;

    private byte[] Materialize()
    {
        var data = GC.AllocateUninitializedArray<byte>(checked((int)Source!.ByteCount), pinned: true);
        Source.CopyTo(data);
        return Interlocked.CompareExchange(ref _data, data, null) ?? data;
    }

    /// <summary>Number of elements.</summary>
    public long ElementCount => ElementCountOf(Shape);

    /// <summary>Allocates a zero tensor on the pinned object heap (a string tensor of empty strings).</summary>
    public static Tensor Zeros(ElementType type, long[] shape) =>
        new(type, shape, GC.AllocateArray<byte>(checked((int)(ElementCountOf(shape) * (type == ElementType.String ? sizeof(int) : type.SizeOf()))), pinned: true));

    /// <summary>A string tensor from its elements (arbitrary bytes each, UTF-8 for text).</summary>
    public static Tensor FromStrings(long[] shape, IReadOnlyList<byte[]> elements)
    {
        ArgumentNullException.ThrowIfNull(elements);
        var data = new byte[checked(elements.Sum(e => (long)e.Length + sizeof(int)))];
        var offset = 0;
        foreach (var e in elements)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(offset), e.Length);
            e.CopyTo(data, offset + sizeof(int));
            offset += sizeof(int) + e.Length;
        }

        return new Tensor(ElementType.String, shape, data);
    }

    /// <summary>A string tensor's elements.</summary>
    public IReadOnlyList<byte[]> ReadStrings()
    {
        if (ElementType != ElementType.String)
        {
            throw new BatchwiseException($"A {ElementType.ShortName()} tensor has no string elements", "Read numeric tensors with AsSpan.");
        }

        var result = new List<byte[]>((int)ElementCount);
        var offset = 0;
        while (offset < Data.Length)
        {
            var length = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(Data.AsSpan(offset));
            result.Add(Data.AsSpan(offset + sizeof(int), length).ToArray());
            offset += sizeof(int) + length;
        }

        return result;
    }

    /// <summary>How many length-prefixed elements <paramref name="data"/> holds, or -1 when a length runs past its end.</summary>
    public static long CountStrings(ReadOnlySpan<byte> data)
    {
        long count = 0;
        var offset = 0;
        while (offset < data.Length)
        {
            if (data.Length - offset < sizeof(int))
            {
                return -1;
            }

            var length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[offset..]);
            if (length > (uint)(data.Length - offset - sizeof(int)))
            {
                return -1;
            }

            offset += sizeof(int) + (int)length;
            count++;
        }

        return count;
    }

    /// <summary>Creates a tensor from typed values.</summary>
    public static Tensor From<T>(ElementType type, long[] shape, ReadOnlySpan<T> values)
        where T : unmanaged
    {
        var t = Zeros(type, shape);
        MemoryMarshal.AsBytes(values).CopyTo(t.Data);
        return t;
    }

    /// <summary>The data as typed elements.</summary>
    public Span<T> AsSpan<T>()
        where T : unmanaged => MemoryMarshal.Cast<byte, T>(Data.AsSpan());

    /// <summary>The values as float64, whatever the element type (for comparisons and reports).</summary>
    public double[] ToDoubles()
    {
        var n = (int)ElementCount;
        var result = new double[n];
        switch (ElementType)
        {
            case ElementType.Float: { var s = AsSpan<float>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.Float16: { var s = AsSpan<Half>(); for (var i = 0; i < n; i++) { result[i] = (double)s[i]; } break; }
            case ElementType.BFloat16: { var s = AsSpan<ushort>(); for (var i = 0; i < n; i++) { result[i] = BitConverter.Int32BitsToSingle(s[i] << 16); } break; }
            case ElementType.Double: AsSpan<double>().CopyTo(result); break;
            case ElementType.Int64: { var s = AsSpan<long>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.Int32: { var s = AsSpan<int>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.Int16: { var s = AsSpan<short>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.UInt16: { var s = AsSpan<ushort>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.UInt32: { var s = AsSpan<uint>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.UInt64: { var s = AsSpan<ulong>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.Int8: { var s = AsSpan<sbyte>(); for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            case ElementType.UInt8 or ElementType.Bool: { var s = Data; for (var i = 0; i < n; i++) { result[i] = s[i]; } break; }
            default: throw new BatchwiseException($"Cannot read {ElementType} values", "Use a numeric tensor.");
        }

        return result;
    }

    /// <summary>Number of elements of a shape.</summary>
    public static long ElementCountOf(IReadOnlyList<long> shape) => shape.Aggregate(1L, (a, b) => checked(a * b));

    /// <summary>Shape as text, e.g. [8, 3, 224, 224].</summary>
    public static string ShapeText(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{ElementType.ShortName()} {ShapeText(Shape)}";
}
