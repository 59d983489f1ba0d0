using Batchwise.Engines;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Onnx;

/// <summary>Converts ONNX TensorProto messages (initializers, test-data .pb files) to and from host tensors.</summary>
/// <remarks>
/// A TensorProto holds its values either in raw_data (little-endian bytes) or in a typed field chosen by the
/// element type, as onnx.proto documents: float_data (float), int32_data (int32, int16, int8, uint16, uint8,
/// bool, and float16/bfloat16 as their 16-bit patterns), int64_data (int64), double_data (double) and
/// uint64_data (uint32, uint64).
/// </remarks>
public static class TensorProtos
{
    /// <summary>Reads a serialized TensorProto file (e.g. a backend test's input_0.pb).</summary>
    public static OnnxProto.TensorProto ReadFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Tensor file '{path}' not found", "Check the path.");
        }

        try
        {
            return OnnxProto.TensorProto.Parser.ParseFrom(File.ReadAllBytes(path));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new BatchwiseException($"'{path}' is not a serialized ONNX TensorProto: {e.Message}", "Pass a .pb file written by onnx.numpy_helper.from_array(...).SerializeToString().", e);
        }
    }

    /// <summary>Converts a TensorProto to a host tensor, whichever field holds its values.</summary>
    public static Tensor ToTensor(OnnxProto.TensorProto proto)
    {
        ArgumentNullException.ThrowIfNull(proto);
        var label = string.IsNullOrEmpty(proto.Name) ? "tensor" : $"tensor '{proto.Name}'";
        var type = (ElementType)proto.DataType;
        if (!Enum.IsDefined(type) || type is ElementType.Undefined or ElementType.String)
        {
            throw new BatchwiseException($"The {label} has data type {DataTypeName(proto.DataType)}, which Batchwise cannot hold as a numeric tensor", "Use a numeric or bool tensor.");
        }

        if (proto.DataLocation == OnnxProto.TensorProto.Types.DataLocation.External)
        {
            throw new BatchwiseException($"The {label} keeps its data in an external file", "Load it through OnnxModel.Load, which inlines external data, or re-save it with its data inside.");
        }

        if (proto.Segment is not null)
        {
            throw new BatchwiseException($"The {label} is one segment of a larger tensor; segmented tensors are not supported", "Re-save the tensor whole.");
        }

        var shape = proto.Dims.ToArray();
        if (shape.Any(d => d < 0))
        {
            throw new BatchwiseException($"The {label} has a negative dimension {Tensor.ShapeText(shape)}", "Re-save the tensor.");
        }

        var tensor = Tensor.Zeros(type, shape);
        var count = tensor.ElementCount;
        if (proto.RawData.Length > 0 || count == 0)
        {
            if (proto.RawData.Length != tensor.Data.LongLength)
            {
                throw new BatchwiseException($"The {label} ({type.ShortName()} {Tensor.ShapeText(shape)}) needs {tensor.Data.LongLength} bytes of raw_data, has {proto.RawData.Length}", "The tensor is corrupt; re-save it.");
            }

            if (!BitConverter.IsLittleEndian)
            {
                throw new PlatformNotSupportedException("Batchwise reads ONNX raw_data on little-endian hosts only.");
            }

            proto.RawData.Span.CopyTo(tensor.Data);
            return tensor;
        }

        var (field, available) = type switch
        {
            ElementType.Float => ("float_data", (long)proto.FloatData.Count),
            ElementType.Double => ("double_data", proto.DoubleData.Count),
            ElementType.Int64 => ("int64_data", proto.Int64Data.Count),
            ElementType.UInt32 or ElementType.UInt64 => ("uint64_data", proto.Uint64Data.Count),
            _ => ("int32_data", proto.Int32Data.Count),
        };
        if (available != count)
        {
            throw new BatchwiseException($"The {label} ({type.ShortName()} {Tensor.ShapeText(shape)}) needs {count} values, its {field} has {available}", "The tensor is corrupt; re-save it.");
        }

        var n = (int)count;
        switch (type)
        {
            case ElementType.Float: Copy(proto.FloatData, tensor.AsSpan<float>()); break;
            case ElementType.Double: Copy(proto.DoubleData, tensor.AsSpan<double>()); break;
            case ElementType.Int64: Copy(proto.Int64Data, tensor.AsSpan<long>()); break;
            case ElementType.Int32: Copy(proto.Int32Data, tensor.AsSpan<int>()); break;
            case ElementType.UInt64: Copy(proto.Uint64Data, tensor.AsSpan<ulong>()); break;
            case ElementType.UInt32:
                {
                    var s = tensor.AsSpan<uint>();
                    for (var i = 0; i < n; i++)
                    {
                        s[i] = checked((uint)proto.Uint64Data[i]);
                    }

                    break;
                }

            case ElementType.Int16:
                {
                    var s = tensor.AsSpan<short>();
                    for (var i = 0; i < n; i++)
                    {
                        s[i] = checked((short)proto.Int32Data[i]);
                    }

                    break;
                }

            case ElementType.UInt16 or ElementType.Float16 or ElementType.BFloat16:
                {
                    // float16 and bfloat16 travel in int32_data as their bit patterns.
                    var s = tensor.AsSpan<ushort>();
                    for (var i = 0; i < n; i++)
                    {
                        s[i] = unchecked((ushort)proto.Int32Data[i]);
                    }

                    break;
                }

            case ElementType.Int8:
                {
                    var s = tensor.AsSpan<sbyte>();
                    for (var i = 0; i < n; i++)
                    {
                        s[i] = checked((sbyte)proto.Int32Data[i]);
                    }

                    break;
                }

            case ElementType.UInt8 or ElementType.Bool:
                {
                    var s = tensor.Data;
                    for (var i = 0; i < n; i++)
                    {
                        s[i] = type == ElementType.Bool ? (byte)(proto.Int32Data[i] != 0 ? 1 : 0) : checked((byte)proto.Int32Data[i]);
                    }

                    break;
                }

            default:
                throw new BatchwiseException($"The {label} has data type {type}, which has no typed field here", "Store it in raw_data.");
        }

        return tensor;
    }

    /// <summary>Converts a host tensor to a TensorProto with its values in raw_data (what onnx.numpy_helper writes).</summary>
    public static OnnxProto.TensorProto FromTensor(Tensor tensor, string name = "")
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Batchwise writes ONNX raw_data on little-endian hosts only.");
        }

        var proto = new OnnxProto.TensorProto { Name = name, DataType = (int)tensor.ElementType, RawData = ByteString.CopyFrom(tensor.Data) };
        proto.Dims.AddRange(tensor.Shape);
        return proto;
    }

    /// <summary>Converts a host tensor to a TensorProto with its values in the typed field for its element type (float_data, int32_data, ...).</summary>
    public static OnnxProto.TensorProto FromTensorTyped(Tensor tensor, string name = "")
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var proto = new OnnxProto.TensorProto { Name = name, DataType = (int)tensor.ElementType };
        proto.Dims.AddRange(tensor.Shape);
        switch (tensor.ElementType)
        {
            case ElementType.Float: proto.FloatData.AddRange(tensor.AsSpan<float>().ToArray()); break;
            case ElementType.Double: proto.DoubleData.AddRange(tensor.AsSpan<double>().ToArray()); break;
            case ElementType.Int64: proto.Int64Data.AddRange(tensor.AsSpan<long>().ToArray()); break;
            case ElementType.UInt64: proto.Uint64Data.AddRange(tensor.AsSpan<ulong>().ToArray()); break;
            case ElementType.UInt32: proto.Uint64Data.AddRange(tensor.AsSpan<uint>().ToArray().Select(v => (ulong)v)); break;
            case ElementType.Int32: proto.Int32Data.AddRange(tensor.AsSpan<int>().ToArray()); break;
            case ElementType.Int16: proto.Int32Data.AddRange(tensor.AsSpan<short>().ToArray().Select(v => (int)v)); break;
            case ElementType.UInt16 or ElementType.Float16 or ElementType.BFloat16: proto.Int32Data.AddRange(tensor.AsSpan<ushort>().ToArray().Select(v => (int)v)); break;
            case ElementType.Int8: proto.Int32Data.AddRange(tensor.AsSpan<sbyte>().ToArray().Select(v => (int)v)); break;
            case ElementType.UInt8 or ElementType.Bool: proto.Int32Data.AddRange(tensor.Data.Select(v => (int)v)); break;
            default: throw new BatchwiseException($"Cannot write a {tensor.ElementType} tensor to a typed field", "Use FromTensor (raw_data).");
        }

        return proto;
    }

    /// <summary>ONNX's name for a TensorProto.DataType number (FLOAT, INT64, STRING, FLOAT8E4M3FN, ...).</summary>
    public static string DataTypeName(int dataType) =>
        Enum.IsDefined(typeof(OnnxProto.TensorProto.Types.DataType), dataType)
            ? ((OnnxProto.TensorProto.Types.DataType)dataType).ToString().ToUpperInvariant()
            : dataType.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static void Copy<T>(Google.Protobuf.Collections.RepeatedField<T> source, Span<T> target)
    {
        for (var i = 0; i < target.Length; i++)
        {
            target[i] = source[i];
        }
    }
}
