namespace Batchwise.Onnx;

/// <summary>A tensor element type; the values are ONNX's TensorProto.DataType numbers.</summary>
public enum ElementType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    UInt16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    UInt32 = 12,
    UInt64 = 13,
    BFloat16 = 16,
}

/// <summary>Sizes and names of element types.</summary>
public static class ElementTypes
{
    /// <summary>Bytes per element; throws for types without a fixed size.</summary>
    public static int SizeOf(this ElementType type) => type switch
    {
        ElementType.Float or ElementType.Int32 or ElementType.UInt32 => 4,
        ElementType.UInt8 or ElementType.Int8 or ElementType.Bool => 1,
        ElementType.UInt16 or ElementType.Int16 or ElementType.Float16 or ElementType.BFloat16 => 2,
        ElementType.Int64 or ElementType.Double or ElementType.UInt64 => 8,
        _ => throw new BatchwiseException($"Element type {type} has no fixed size", "Use a numeric or bool tensor."),
    };

    /// <summary>The name used in reports and the inference protocol's datatype strings (FP32, INT64, ...).</summary>
    public static string ProtocolName(this ElementType type) => type switch
    {
        ElementType.Float => "FP32",
        ElementType.Float16 => "FP16",
        ElementType.BFloat16 => "BF16",
        ElementType.Double => "FP64",
        ElementType.UInt8 => "UINT8",
        ElementType.Int8 => "INT8",
        ElementType.UInt16 => "UINT16",
        ElementType.Int16 => "INT16",
        ElementType.Int32 => "INT32",
        ElementType.Int64 => "INT64",
        ElementType.UInt32 => "UINT32",
        ElementType.UInt64 => "UINT64",
        ElementType.Bool => "BOOL",
        ElementType.String => "BYTES",
        _ => "UNDEFINED",
    };

    /// <summary>The lower-case name ONNX and numpy users know (float32, int64, ...).</summary>
    public static string ShortName(this ElementType type) => type switch
    {
        ElementType.Float => "float32",
        ElementType.Float16 => "float16",
        ElementType.BFloat16 => "bfloat16",
        ElementType.Double => "float64",
        ElementType.Bool => "bool",
        ElementType.String => "string",
        _ => type.ToString().ToLowerInvariant(),
    };

    /// <summary>Parses a protocol datatype name (FP32) back to an element type.</summary>
    public static ElementType FromProtocolName(string name)
    {
        foreach (var t in Enum.GetValues<ElementType>())
        {
            if (t != ElementType.Undefined && string.Equals(t.ProtocolName(), name, StringComparison.OrdinalIgnoreCase))
            {
                return t;
            }
        }

        throw new BatchwiseException($"Unknown datatype '{name}'", "Use one of FP32, FP16, INT64, INT32, INT8, UINT8, BOOL.");
    }

    /// <summary>True for float16, bfloat16, float32 and float64.</summary>
    public static bool IsFloatingPoint(this ElementType type) =>
        type is ElementType.Float or ElementType.Float16 or ElementType.BFloat16 or ElementType.Double;
}
