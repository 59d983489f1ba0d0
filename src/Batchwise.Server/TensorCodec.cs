using System.Buffers.Binary;
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

    /// <summary>Checks a shape and returns its element count.</summary>
    public static long CountOf(string input, IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0)
            {
                throw InferenceError.BadRequest($"Input '{input}' has a negative dimension in shape {Tensor.ShapeText(shape)}");
            }

            n = checked(n * d);
        }

        return n;
    }

    /// <summary>Wraps raw little-endian bytes (BYTES: length-prefixed elements), checking their size against the shape.</summary>
    public static Tensor FromBytes(string input, ElementType type, long[] shape, ReadOnlySpan<byte> bytes)
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

        var expected = CountOf(input, shape) * type.SizeOf();
        if (bytes.Length != expected)
        {
            throw InferenceError.BadRequest($"Input '{input}' has {bytes.Length} bytes of data; {type.ProtocolName()} {Tensor.ShapeText(shape)} needs {expected}");
        }

        var t = Tensor.Zeros(type, shape);
        bytes.CopyTo(t.Data);
        return t;
    }

    /// <summary>Reads JSON data (flat or nested arrays, row-major) into a tensor of the given type and shape.</summary>
    public static Tensor FromJson(string input, ElementType type, long[] shape, JsonElement data)
    {
        var count = CountOf(input, shape);
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

            if (written >= count)
            {
                written++;
                return;
            }

            Write(input, type, e, t.Data.AsSpan((int)(written * size), size));
            written++;
        }

        Visit(data);
        if (written != count)
        {
            throw InferenceError.BadRequest($"Input '{input}' has {written} values; shape {Tensor.ShapeText(shape)} needs {count}");
        }

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

    /// <summary>Writes a tensor's values as a flat JSON array (BYTES as strings, read as UTF-8).</summary>
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

    /// <summary>Reads typed gRPC contents into a tensor.</summary>
    public static Tensor FromContents(string input, ElementType type, long[] shape, InferTensorContents c)
    {
        var count = CountOf(input, shape);
        var t = Tensor.Zeros(type, shape);
        long got;
        switch (type)
        {
            case ElementType.Float: got = c.Fp32Contents.Count; Fill(c.Fp32Contents, t.AsSpan<float>(), count, v => v); break;
            case ElementType.Double: got = c.Fp64Contents.Count; Fill(c.Fp64Contents, t.AsSpan<double>(), count, v => v); break;
            case ElementType.Int64: got = c.Int64Contents.Count; Fill(c.Int64Contents, t.AsSpan<long>(), count, v => v); break;
            case ElementType.UInt64: got = c.Uint64Contents.Count; Fill(c.Uint64Contents, t.AsSpan<ulong>(), count, v => v); break;
            case ElementType.Int32: got = c.IntContents.Count; Fill(c.IntContents, t.AsSpan<int>(), count, v => v); break;
            case ElementType.Int16: got = c.IntContents.Count; Fill(c.IntContents, t.AsSpan<short>(), count, v => checked((short)v)); break;
            case ElementType.Int8: got = c.IntContents.Count; Fill(c.IntContents, t.AsSpan<sbyte>(), count, v => checked((sbyte)v)); break;
            case ElementType.UInt32: got = c.UintContents.Count; Fill(c.UintContents, t.AsSpan<uint>(), count, v => v); break;
            case ElementType.UInt16: got = c.UintContents.Count; Fill(c.UintContents, t.AsSpan<ushort>(), count, v => checked((ushort)v)); break;
            case ElementType.UInt8: got = c.UintContents.Count; Fill(c.UintContents, t.AsSpan<byte>(), count, v => checked((byte)v)); break;
            case ElementType.Bool: got = c.BoolContents.Count; Fill(c.BoolContents, t.AsSpan<byte>(), count, v => v ? (byte)1 : (byte)0); break;
            case ElementType.String:
                if (c.BytesContents.Count != count)
                {
                    throw InferenceError.BadRequest($"Input '{input}' has {c.BytesContents.Count} values; shape {Tensor.ShapeText(shape)} needs {count}");
                }

                return Tensor.FromStrings(shape, c.BytesContents.Select(b => b.ToByteArray()).ToList());
            default: throw InferenceError.BadRequest($"Input '{input}': {type.ProtocolName()} has no typed contents field; send it in raw_input_contents");
        }

        if (got != count)
        {
            throw InferenceError.BadRequest($"Input '{input}' has {got} values; shape {Tensor.ShapeText(shape)} needs {count}");
        }

        return t;
    }

    private static Tensor StringsFromJson(string input, long[] shape, long count, JsonElement data)
    {
        var elements = new List<byte[]>();
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

            if (e.ValueKind != JsonValueKind.String)
            {
                throw Bad(input, ElementType.String, e);
            }

            if (elements.Count < count)
            {
                elements.Add(System.Text.Encoding.UTF8.GetBytes(e.GetString()!));
            }
            else
            {
                elements.Add([]);
            }
        }

        Visit(data);
        if (elements.Count != count)
        {
            throw InferenceError.BadRequest($"Input '{input}' has {elements.Count} values; shape {Tensor.ShapeText(shape)} needs {count}");
        }

        return Tensor.FromStrings(shape, elements);
    }

    private static void Fill<TIn, TOut>(IList<TIn> source, Span<TOut> target, long count, Func<TIn, TOut> convert)
        where TOut : unmanaged
    {
        if (source.Count != count)
        {
            return;
        }

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
                case ElementType.Float: BinaryPrimitives.WriteSingleLittleEndian(target, (float)Number(input, type, e)); return;
                case ElementType.Double: BinaryPrimitives.WriteDoubleLittleEndian(target, Number(input, type, e)); return;
                case ElementType.Float16: BinaryPrimitives.WriteHalfLittleEndian(target, (Half)Number(input, type, e)); return;
                case ElementType.BFloat16: BinaryPrimitives.WriteUInt16LittleEndian(target, (ushort)(BitConverter.SingleToInt32Bits((float)Number(input, type, e)) >> 16)); return;
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
            throw InferenceError.BadRequest($"Input '{input}': value {e.GetRawText()} is out of range for {type.ProtocolName()}");
        }
    }

    private static double Number(string input, ElementType type, JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Number => e.GetDouble(),
        JsonValueKind.String when e.GetString() is "NaN" or "nan" => double.NaN,
        JsonValueKind.String when e.GetString() is "Infinity" or "inf" => double.PositiveInfinity,
        JsonValueKind.String when e.GetString() is "-Infinity" or "-inf" => double.NegativeInfinity,
        _ => throw Bad(input, type, e),
    };

    private static InferenceError Bad(string input, ElementType type, JsonElement e)
    {
        var text = e.GetRawText();
        return InferenceError.BadRequest($"Input '{input}': value {(text.Length > 40 ? text[..40] + "..." : text)} is not a {type.ProtocolName()} value");
    }
}
