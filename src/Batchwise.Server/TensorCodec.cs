using System.Buffers.Binary;
using System.Numerics;
using System.Text.Json;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Server.Protocol;

namespace Batchwise.Server;

/// <summary>Tensor data to and from the protocol's forms: JSON arrays (flat or nested), raw bytes, typed gRPC contents.</summary>
internal static class TensorCodec
{
    /// <summary>Parses a protocol datatype, or a 400 naming the ones there are.</summary>
    public static ElementType ParseDatatype(string input, string? datatype)
    {
        if (string.IsNullOrEmpty(datatype))
        {
            throw InferenceError.BadRequest($"Input '{input}' has no datatype");
        }

        try
        {
            return ElementTypes.FromProtocolName(datatype);
        }
        catch (BatchwiseException)
        {
            throw InferenceError.BadRequest($"Input '{input}' has unknown datatype '{datatype}'; use BOOL, UINT8..UINT64, INT8..INT64, FP16, BF16, FP32, FP64 or BYTES");
        }
    }

    /// <summary>Checks a shape and returns its element count (a 400 on a negative dimension or an overflow).</summary>
    public static long CountOf(string input, IReadOnlyList<long> shape) => RequestValidator.ElementCount(input, shape);

    /// <summary>
    /// Copies raw little-endian bytes (BYTES: length-prefixed elements) into a tensor, checking their size against the
    /// shape before allocating; with <paramref name="buffers"/>, a numeric tensor's array is the request's pooled one.
    /// </summary>
    public static Tensor FromBytes(string input, ElementType type, long[] shape, ReadOnlySpan<byte> bytes, RequestBuffers? buffers = null)
    {
        if (type == ElementType.String)
        {
            var count = CountOf(input, shape);
            var found = Tensor.CountStrings(bytes);
            if (found != count)
            {
                throw InferenceError.BadRequest(found < 0
                    ? $"Input '{input}': BYTES data is malformed (an element's 4-byte length runs past the {bytes.Length} bytes given)"
                    : $"Input '{input}' has {found} BYTES elements; shape {Tensor.ShapeText(shape)} needs {count}");
            }

            return new Tensor(type, shape, bytes.ToArray());
        }

        var expected = RequestValidator.ByteCount(input, type, shape);
        RequestValidator.CheckDataBytes(input, type, shape, expected, bytes.Length);
        var t = buffers is null ? Tensor.Zeros(type, shape) : new Tensor(type, shape, buffers.Rent(bytes.Length));
        bytes.CopyTo(t.Data);
        return t;
    }

    /// <summary>
    /// A tensor over gRPC raw contents without copying them: the parsed message's ByteString owns an array of exactly its
    /// length, which the tensor takes as its data (the message is immutable and lives as long as the request). Checked
    /// as <see cref="FromBytes"/>; copied only where the bytes are not a whole array (BYTES, or a slice).
    /// </summary>
    public static Tensor FromRawContents(string input, ElementType type, long[] shape, Google.Protobuf.ByteString raw)
    {
        if (type != ElementType.String && System.Runtime.InteropServices.MemoryMarshal.TryGetArray(raw.Memory, out var segment)
            && segment.Array is { } array && segment.Offset == 0 && segment.Count == array.Length)
        {
            var expected = RequestValidator.ByteCount(input, type, shape);
            RequestValidator.CheckDataBytes(input, type, shape, expected, array.Length);
            return new Tensor(type, shape, array);
        }

        return FromBytes(input, type, shape, raw.Span);
    }

    /// <summary>
    /// Counts the values in JSON data (flat or nested arrays) without allocating; stops counting past
    /// <paramref name="limit"/> and returns limit + 1, so a huge array costs no more than the data it holds.
    /// </summary>
    public static long CountJsonValues(JsonElement data, long limit)
    {
        long n = 0;
        void Visit(JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray())
                {
                    if (n > limit)
                    {
                        return;
                    }

                    Visit(item);
                }

                return;
            }

            n++;
        }

        Visit(data);
        return Math.Min(n, limit + 1);
    }

    /// <summary>Reads JSON data (flat or nested arrays, row-major) into a tensor; the values are counted before anything is allocated.</summary>
    public static Tensor FromJson(string input, ElementType type, long[] shape, JsonElement data)
    {
        var count = CountOf(input, shape);
        var given = CountJsonValues(data, count);
        RequestValidator.CheckValueCount(input, shape, count, given, more: given > count);
        if (type == ElementType.String)
        {
            return StringsFromJson(input, shape, count, data);
        }

        var t = Tensor.Zeros(type, shape);
        var size = type.SizeOf();
        long written = 0;
        void Visit(JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray())
                {
                    Visit(item);
                }

                return;
            }

            Write(input, type, e, t.Data.AsSpan((int)(written * size), size));
            written++;
        }

        Visit(data);
        return t;
    }

    /// <summary>Writes a protocol tensor's "name", "datatype" and "shape" fields (the caller writes the data or parameters).</summary>
    public static void WriteHeader(Utf8JsonWriter w, string name, Tensor t)
    {
        w.WriteString("name", name);
        w.WriteString("datatype", t.ElementType.ProtocolName());
        w.WriteStartArray("shape");
        foreach (var d in t.Shape)
        {
            w.WriteNumberValue(d);
        }

        w.WriteEndArray();
    }

    /// <summary>Writes a tensor's values as a flat JSON array.</summary>
    public static void WriteJson(Utf8JsonWriter w, Tensor t)
    {
        w.WriteStartArray();
        if (t.ElementType == ElementType.String)
        {
            foreach (var e in t.ReadStrings())
            {
                w.WriteStringValue(System.Text.Encoding.UTF8.GetString(e));
            }

            w.WriteEndArray();
            return;
        }

        var n = (int)t.ElementCount;
        switch (t.ElementType)
        {
            case ElementType.Float: foreach (var v in t.AsSpan<float>()) { WriteFloat(w, v); } break;
            case ElementType.Double: foreach (var v in t.AsSpan<double>()) { WriteFloat(w, v); } break;
            case ElementType.Float16: foreach (var v in t.AsSpan<Half>()) { WriteFloat(w, (float)v); } break;
            case ElementType.Bool: for (var i = 0; i < n; i++) { w.WriteBooleanValue(t.Data[i] != 0); } break;
            case ElementType.Int64: foreach (var v in t.AsSpan<long>()) { w.WriteNumberValue(v); } break;
            case ElementType.UInt64: foreach (var v in t.AsSpan<ulong>()) { w.WriteNumberValue(v); } break;
            default:
                foreach (var v in t.ToDoubles())
                {
                    w.WriteNumberValue(v);
                }

                break;
        }

        w.WriteEndArray();
    }

    /// <summary>How many values typed gRPC contents hold for <paramref name="type"/> (the field the protocol assigns it), or a 400 when it has none.</summary>
    public static long ContentsCount(string input, ElementType type, InferTensorContents c) => type switch
    {
        ElementType.Float => c.Fp32Contents.Count,
        ElementType.Double => c.Fp64Contents.Count,
        ElementType.Int64 => c.Int64Contents.Count,
        ElementType.UInt64 => c.Uint64Contents.Count,
        ElementType.Int32 or ElementType.Int16 or ElementType.Int8 => c.IntContents.Count,
        ElementType.UInt32 or ElementType.UInt16 or ElementType.UInt8 => c.UintContents.Count,
        ElementType.Bool => c.BoolContents.Count,
        ElementType.String => c.BytesContents.Count,
        _ => throw InferenceError.BadRequest($"Input '{input}': {type.ProtocolName()} has no typed contents field; send it in raw_input_contents"),
    };

    /// <summary>Bytes the parsed typed contents hold in memory (every field, whether used or not).</summary>
    public static long ContentsBytes(InferTensorContents? c) => c is null ? 0 :
        (4L * (c.Fp32Contents.Count + c.IntContents.Count + c.UintContents.Count)) + (8L * (c.Fp64Contents.Count + c.Int64Contents.Count + c.Uint64Contents.Count)) + c.BoolContents.Count
        + c.BytesContents.Sum(b => (long)b.Length);

    /// <summary>Reads typed gRPC contents into a tensor; the values are counted, and each checked against the type's range, before the tensor is used.</summary>
    public static Tensor FromContents(string input, ElementType type, long[] shape, InferTensorContents c)
    {
        var count = CountOf(input, shape);
        RequestValidator.CheckValueCount(input, shape, count, ContentsCount(input, type, c));
        if (type == ElementType.String)
        {
            return Tensor.FromStrings(shape, [.. c.BytesContents.Select(b => b.ToByteArray())]);
        }

        var t = Tensor.Zeros(type, shape);
        switch (type)
        {
            case ElementType.Float: Fill(c.Fp32Contents, t.AsSpan<float>(), v => v); break;
            case ElementType.Double: Fill(c.Fp64Contents, t.AsSpan<double>(), v => v); break;
            case ElementType.Int64: Fill(c.Int64Contents, t.AsSpan<long>(), v => v); break;
            case ElementType.UInt64: Fill(c.Uint64Contents, t.AsSpan<ulong>(), v => v); break;
            case ElementType.Int32: Fill(c.IntContents, t.AsSpan<int>(), v => v); break;
            case ElementType.Int16: Fill(c.IntContents, t.AsSpan<short>(), v => v is >= short.MinValue and <= short.MaxValue ? (short)v : throw OutOfRange(input, type, v)); break;
            case ElementType.Int8: Fill(c.IntContents, t.AsSpan<sbyte>(), v => v is >= sbyte.MinValue and <= sbyte.MaxValue ? (sbyte)v : throw OutOfRange(input, type, v)); break;
            case ElementType.UInt32: Fill(c.UintContents, t.AsSpan<uint>(), v => v); break;
            case ElementType.UInt16: Fill(c.UintContents, t.AsSpan<ushort>(), v => v <= ushort.MaxValue ? (ushort)v : throw OutOfRange(input, type, v)); break;
            case ElementType.UInt8: Fill(c.UintContents, t.AsSpan<byte>(), v => v <= byte.MaxValue ? (byte)v : throw OutOfRange(input, type, v)); break;
            case ElementType.Bool: Fill(c.BoolContents, t.AsSpan<byte>(), v => v ? (byte)1 : (byte)0); break;
            default: throw InferenceError.BadRequest($"Input '{input}': {type.ProtocolName()} has no typed contents field; send it in raw_input_contents");
        }

        return t;
    }

    /// <summary>BYTES from JSON strings (read as UTF-8); the count was checked before.</summary>
    private static Tensor StringsFromJson(string input, long[] shape, long count, JsonElement data)
    {
        var elements = new List<byte[]>((int)Math.Min(count, 1 << 16));
        void Visit(JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray())
                {
                    Visit(item);
                }

                return;
            }

            elements.Add(System.Text.Encoding.UTF8.GetBytes(RequestValidator.JsonString(e, $"Input '{input}': a BYTES value")));
        }

        Visit(data);
        return Tensor.FromStrings(shape, elements);
    }

    private static InferenceError OutOfRange(string input, ElementType type, long value) =>
        InferenceError.BadRequest($"Input '{input}': value {value} is out of range for {type.ProtocolName()}");

    private static void Fill<TIn, TOut>(IList<TIn> source, Span<TOut> target, Func<TIn, TOut> convert)
        where TOut : unmanaged
    {
        for (var i = 0; i < source.Count; i++)
        {
            target[i] = convert(source[i]);
        }
    }

    private static void WriteFloat(Utf8JsonWriter w, double v)
    {
        if (double.IsFinite(v))
        {
            w.WriteNumberValue(v);
        }
        else
        {
            // JSON has no NaN or infinity; write them as the strings numpy and Triton's JSON use.
            w.WriteStringValue(double.IsNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
        }
    }

    private static void WriteFloat(Utf8JsonWriter w, float v)
    {
        if (float.IsFinite(v))
        {
            w.WriteNumberValue(v);
        }
        else
        {
            WriteFloat(w, (double)v);
        }
    }

    private static void Write(string input, ElementType type, JsonElement e, Span<byte> target)
    {
        try
        {
            switch (type)
            {
                case ElementType.Bool:
                    target[0] = e.ValueKind switch
                    {
                        JsonValueKind.True => 1,
                        JsonValueKind.False => 0,
                        _ => throw Bad(input, type, e),
                    };
                    return;
                case ElementType.Float: BinaryPrimitives.WriteSingleLittleEndian(target, Narrow(input, type, e, (float)Number(input, type, e))); return;
                case ElementType.Double: BinaryPrimitives.WriteDoubleLittleEndian(target, Number(input, type, e)); return;
                case ElementType.Float16: BinaryPrimitives.WriteHalfLittleEndian(target, Narrow(input, type, e, (Half)Number(input, type, e))); return;
                case ElementType.BFloat16: BinaryPrimitives.WriteUInt16LittleEndian(target, (ushort)(BitConverter.SingleToInt32Bits(Narrow(input, type, e, (float)Number(input, type, e))) >> 16)); return;
                case ElementType.UInt64:
                    BinaryPrimitives.WriteUInt64LittleEndian(target, e.ValueKind == JsonValueKind.Number && e.TryGetUInt64(out var u) ? u : throw Bad(input, type, e));
                    return;
                default:
                    break;
            }

            var v = e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var l) ? l : throw Bad(input, type, e);
            switch (type)
            {
                case ElementType.Int64: BinaryPrimitives.WriteInt64LittleEndian(target, v); break;
                case ElementType.Int32: BinaryPrimitives.WriteInt32LittleEndian(target, checked((int)v)); break;
                case ElementType.Int16: BinaryPrimitives.WriteInt16LittleEndian(target, checked((short)v)); break;
                case ElementType.Int8: target[0] = unchecked((byte)checked((sbyte)v)); break;
                case ElementType.UInt32: BinaryPrimitives.WriteUInt32LittleEndian(target, checked((uint)v)); break;
                case ElementType.UInt16: BinaryPrimitives.WriteUInt16LittleEndian(target, checked((ushort)v)); break;
                case ElementType.UInt8: target[0] = checked((byte)v); break;
                default: throw InferenceError.BadRequest($"Input '{input}': {type.ProtocolName()} cannot be sent as JSON");
            }
        }
        catch (OverflowException)
        {
            throw OutOfRange(input, type, e);
        }
    }

    /// <summary>
    /// A JSON number, or NaN / infinity only when written as the strings numpy and Triton use ("NaN", "Infinity");
    /// a literal too large for a double (1e400) is refused, not read as infinity.
    /// </summary>
    private static double Number(string input, ElementType type, JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Number)
        {
            return e.TryGetDouble(out var d) && double.IsFinite(d) ? d : throw OutOfRange(input, type, e);
        }

        if (e.ValueKind == JsonValueKind.String)
        {
            switch (RequestValidator.JsonString(e, $"Input '{input}': a value"))
            {
                case "NaN" or "nan": return double.NaN;
                case "Infinity" or "inf": return double.PositiveInfinity;
                case "-Infinity" or "-inf": return double.NegativeInfinity;
                default: break;
            }
        }

        throw Bad(input, type, e);
    }

    /// <summary>A finite value that became infinite in a narrower type was out of that type's range.</summary>
    private static T Narrow<T>(string input, ElementType type, JsonElement e, T value)
        where T : IFloatingPointIeee754<T>
    {
        return T.IsInfinity(value) && e.ValueKind == JsonValueKind.Number ? throw OutOfRange(input, type, e) : value;
    }

    private static InferenceError OutOfRange(string input, ElementType type, JsonElement e) =>
        InferenceError.BadRequest($"Input '{input}': value {RequestValidator.RawText(e)} is out of range for {type.ProtocolName()}");

    private static InferenceError Bad(string input, ElementType type, JsonElement e) =>
        InferenceError.BadRequest($"Input '{input}': value {RequestValidator.RawText(e)} is not a {type.ProtocolName()} value");
}
