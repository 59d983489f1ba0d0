using System.Runtime.InteropServices;
using OnnxProto = Onnx;

namespace Batchwise.Onnx;

/// <summary>Read-only questions about a model's graph: initializers, their values, what produces a value.</summary>
public static class OnnxModelQueries
{
    /// <summary>Initializers by name.</summary>
    public static IReadOnlyDictionary<string, OnnxProto.TensorProto> InitializersByName(this OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var result = new Dictionary<string, OnnxProto.TensorProto>(StringComparer.Ordinal);
        foreach (var t in model.Graph.Initializer)
        {
            result[t.Name] = t;
        }

        return result;
    }

    /// <summary>The node that produces each value, by value name.</summary>
    public static IReadOnlyDictionary<string, OnnxProto.NodeProto> ProducersByName(this OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var result = new Dictionary<string, OnnxProto.NodeProto>(StringComparer.Ordinal);
        foreach (var n in model.Graph.Node)
        {
            foreach (var o in n.Output)
            {
                result[o] = n;
            }
        }

        return result;
    }

    /// <summary>Learned weights: elements of float initializers and float Constant-node tensors of rank 1 or more, without BatchNormalization's running mean and variance or Resize's roi and scales (what papers and torchvision count).</summary>
    public static long LearnedParameterCount(this OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var statistics = model.Graph.Node.Where(n => n.OpType == "BatchNormalization").SelectMany(n => n.Input.Skip(3))
            .Concat(model.Graph.Node.Where(n => n.OpType is "Resize" or "Upsample").SelectMany(n => n.Input.Skip(1))) // roi and scales are not weights
            .ToHashSet(StringComparer.Ordinal);
        var constants = model.Graph.Node.Where(n => n.OpType == "Constant" && n.Domain.Length == 0 && !statistics.Contains(n.Output[0]))
            .Select(n => n.Attribute.FirstOrDefault(a => a.Name == "value")?.T)
            .OfType<OnnxProto.TensorProto>()
            .Where(t => t.Dims.Count > 0 && ((ElementType)t.DataType).IsFloatingPoint())
            .Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));
        return constants + model.Graph.Initializer
            .Where(t => t.Dims.Count > 0 && ((ElementType)t.DataType).IsFloatingPoint() && !statistics.Contains(t.Name))
            .Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));
    }

    /// <summary>Element count of a tensor proto from its dims.</summary>
    public static long ElementCount(this OnnxProto.TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.Dims.Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>An integer tensor's values (int64, int32, int8/uint8, bool), from raw data or the typed fields.</summary>
    public static long[] ToInt64s(this OnnxProto.TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var type = (ElementType)tensor.DataType;
        if (!tensor.RawData.IsEmpty)
        {
            var raw = tensor.RawData.Span;
            return type switch
            {
                ElementType.Int64 => MemoryMarshal.Cast<byte, long>(raw).ToArray(),
                ElementType.Int32 => Array.ConvertAll(MemoryMarshal.Cast<byte, int>(raw).ToArray(), v => (long)v),
                ElementType.UInt64 => Array.ConvertAll(MemoryMarshal.Cast<byte, ulong>(raw).ToArray(), v => (long)v),
                ElementType.Int8 => Array.ConvertAll(MemoryMarshal.Cast<byte, sbyte>(raw).ToArray(), v => (long)v),
                ElementType.UInt8 or ElementType.Bool => Array.ConvertAll(raw.ToArray(), v => (long)v),
                _ => throw new BatchwiseException($"Initializer '{tensor.Name}' holds {type.ShortName()}, not integers", "Expected an int64 tensor (shape, axes or indices)."),
            };
        }

        return type switch
        {
            ElementType.Int64 => tensor.Int64Data.ToArray(),
            ElementType.UInt64 => tensor.Uint64Data.Select(v => (long)v).ToArray(),
            ElementType.Int32 or ElementType.Int8 or ElementType.UInt8 or ElementType.Bool or ElementType.Int16 or ElementType.UInt16 => tensor.Int32Data.Select(v => (long)v).ToArray(),
            _ => throw new BatchwiseException($"Initializer '{tensor.Name}' holds {type.ShortName()}, not integers", "Expected an int64 tensor (shape, axes or indices)."),
        };
    }

    /// <summary>A float tensor's values (float32, float16, float64), from raw data or the typed fields.</summary>
    public static float[] ToFloats(this OnnxProto.TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var type = (ElementType)tensor.DataType;
        if (!tensor.RawData.IsEmpty)
        {
            var raw = tensor.RawData.Span;
            return type switch
            {
                ElementType.Float => MemoryMarshal.Cast<byte, float>(raw).ToArray(),
                ElementType.Float16 => Array.ConvertAll(MemoryMarshal.Cast<byte, Half>(raw).ToArray(), v => (float)v),
                ElementType.Double => Array.ConvertAll(MemoryMarshal.Cast<byte, double>(raw).ToArray(), v => (float)v),
                _ => throw new BatchwiseException($"Initializer '{tensor.Name}' holds {type.ShortName()}, not floats", "Expected a float tensor."),
            };
        }

        return type switch
        {
            ElementType.Float => tensor.FloatData.ToArray(),
            ElementType.Double => tensor.DoubleData.Select(v => (float)v).ToArray(),
            ElementType.Float16 => tensor.Int32Data.Select(v => (float)BitConverter.UInt16BitsToHalf((ushort)v)).ToArray(),
            _ => throw new BatchwiseException($"Initializer '{tensor.Name}' holds {type.ShortName()}, not floats", "Expected a float tensor."),
        };
    }
}
