using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Comparison;

/// <summary>How float inputs are drawn.</summary>
public enum InputDistribution
{
    /// <summary>Standard normal, N(0, 1).</summary>
    Normal,

    /// <summary>Uniform in [0, 1).</summary>
    Uniform,
}

/// <summary>
/// Seeded random inputs for a model: the same seed gives the same tensors on every machine, so two engines or two
/// model variants see identical data.
/// </summary>
/// <remarks>
/// Float inputs are drawn from <see cref="InputDistribution"/>. Integer inputs that index a Gather over an
/// initializer (token ids into an embedding table, possibly through Cast/Unsqueeze/Reshape) are uniform over that
/// table's rows; inputs named like *mask* are ones, *token_type*/*segment* zeros, *position* 0, 1, 2, ... along the last
/// axis; other integers are uniform in [0, 2). Bool inputs are true.
/// </remarks>
public static class SeededInputs
{
    private static readonly HashSet<string> PassThroughOps = new(StringComparer.Ordinal) { "Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten" };

    /// <summary>Generates one tensor per model input, at the given shapes (in <see cref="OnnxModel.Inputs"/> order).</summary>
    public static IReadOnlyList<Tensor> Generate(OnnxModel model, IReadOnlyList<long[]> shapes, int seed, InputDistribution distribution = InputDistribution.Normal)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(shapes);
        var inputs = model.Inputs;
        if (shapes.Count != inputs.Count)
        {
            throw new ArgumentException($"{shapes.Count} shapes for {inputs.Count} inputs", nameof(shapes));
        }

        var random = new Random(seed);
        var result = new List<Tensor>(inputs.Count);
        for (var i = 0; i < inputs.Count; i++)
        {
            // One generator per input, seeded from the run's seed, so adding an input does not change the others' data.
            var inputRandom = new Random(random.Next());
            result.Add(Generate(model, inputs[i], shapes[i], inputRandom, distribution));
        }

        return result;
    }

    /// <summary>
    /// Resolves the concrete shapes to run: a dynamic first dimension becomes <paramref name="batchSize"/>; an entry of
    /// <paramref name="overrides"/> keyed by an input name gives that input's whole shape, one keyed by a dimension symbol
    /// (e.g. seq) gives that symbol's size everywhere.
    /// </summary>
    public static IReadOnlyList<long[]> ResolveShapes(OnnxModel model, int batchSize, IReadOnlyDictionary<string, long[]> overrides)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(overrides);
        if (batchSize < 1)
        {
            throw new BatchwiseException($"Batch size {batchSize} is not positive", "Pass --batch-size 1 or more.");
        }

        var inputs = model.Inputs;
        var names = inputs.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var symbols = inputs.SelectMany(i => i.Shape).Where(d => d.Symbol is not null).Select(d => d.Symbol!).ToHashSet(StringComparer.Ordinal);
        foreach (var key in overrides.Keys)
        {
            if (!names.Contains(key) && !symbols.Contains(key))
            {
                throw new BatchwiseException(
                    $"--shape names '{key}', which is neither an input nor a dimension symbol of '{model.Name}'",
                    $"Inputs: {string.Join(", ", inputs)}.");
            }
        }

        var shapes = new List<long[]>(inputs.Count);
        foreach (var input in inputs)
        {
            if (input.ElementType is ElementType.Undefined or ElementType.String)
            {
                throw new BatchwiseException($"Input '{input.Name}' of '{model.Name}' is not a numeric tensor ({input.ElementType.ShortName()})", "Batchwise generates numeric and bool tensor inputs only.");
            }

            if (overrides.TryGetValue(input.Name, out var whole))
            {
                if (whole.Length != input.Shape.Count)
                {
                    throw new BatchwiseException($"--shape {input.Name}:{string.Join('x', whole)} has {whole.Length} dimensions; the input has {input.Shape.Count} ({input.ShapeText})", "Give every dimension, e.g. --shape input:1x3x224x224.");
                }

                for (var d = 0; d < whole.Length; d++)
                {
                    if (!input.Shape[d].IsDynamic && input.Shape[d].Value != whole[d])
                    {
                        throw new BatchwiseException($"--shape {input.Name}:{string.Join('x', whole)} sets dimension {d} to {whole[d]}; the model fixes it at {input.Shape[d].Value}", $"The model's shape is {input.ShapeText}.");
                    }
                }

                shapes.Add(whole);
                continue;
            }

            var shape = new long[input.Shape.Count];
            for (var d = 0; d < shape.Length; d++)
            {
                var dim = input.Shape[d];
                if (dim.Value is long v)
                {
                    shape[d] = v;
                }
                else if (dim.Symbol is not null && overrides.TryGetValue(dim.Symbol, out var bySymbol))
                {
                    shape[d] = bySymbol.Length == 1 ? bySymbol[0] : throw new BatchwiseException($"--shape {dim.Symbol}: gives {bySymbol.Length} sizes for one dimension symbol", $"Write --shape {dim.Symbol}:128.");
                }
                else if (d == 0)
                {
                    shape[d] = batchSize;
                }
                else
                {
                    throw new BatchwiseException(
                        $"Input '{input.Name}' {input.ShapeText} has dynamic dimension {d} ('{dim}') and no size for it",
                        $"Pass --shape {(string.IsNullOrEmpty(dim.Symbol) ? input.Name + ":" + string.Join('x', input.Shape.Select((x, j) => j == 0 ? batchSize.ToString(CultureInfo.InvariantCulture) : x.Value?.ToString(CultureInfo.InvariantCulture) ?? "N")) : dim.Symbol + ":N")}.");
                }
            }

            shapes.Add(shape);
        }

        return shapes;
    }

    /// <summary>Parses --shape values: NAME:DxDxD (or NAME:D,D,D); NAME is an input name or a dimension symbol.</summary>
    public static IReadOnlyDictionary<string, long[]> ParseShapes(IEnumerable<string> specs)
    {
        ArgumentNullException.ThrowIfNull(specs);
        var result = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var spec in specs)
        {
            var colon = spec.LastIndexOf(':');
            if (colon <= 0 || colon == spec.Length - 1)
            {
                throw new BatchwiseException($"--shape '{spec}' is not NAME:DIMS", "Write e.g. --shape input_ids:8x128 or --shape seq:128.");
            }

            var dims = spec[(colon + 1)..].Split(['x', 'X', ','], StringSplitOptions.TrimEntries);
            var values = new long[dims.Length];
            for (var i = 0; i < dims.Length; i++)
            {
                if (!long.TryParse(dims[i], NumberStyles.None, CultureInfo.InvariantCulture, out values[i]) || values[i] < 1)
                {
                    throw new BatchwiseException($"--shape '{spec}': '{dims[i]}' is not a positive size", "Write e.g. --shape input_ids:8x128.");
                }
            }

            result[spec[..colon]] = values;
        }

        return result;
    }

    /// <summary>Converts a tensor to another element type (for feeding the same data to an fp16 and an fp32 variant).</summary>
    public static Tensor Cast(Tensor tensor, ElementType target)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.ElementType == target)
        {
            return tensor;
        }

        var values = tensor.ToDoubles();
        var result = Tensor.Zeros(target, (long[])tensor.Shape.Clone());
        for (var i = 0; i < values.Length; i++)
        {
            Write(result, i, values[i]);
        }

        return result;
    }

    private static Tensor Generate(OnnxModel model, TensorSpec input, long[] shape, Random random, InputDistribution distribution)
    {
        var tensor = Tensor.Zeros(input.ElementType, shape);
        var n = (int)tensor.ElementCount;
        var name = input.Name.ToLowerInvariant();
        if (input.ElementType == ElementType.Bool || (!input.ElementType.IsFloatingPoint() && name.Contains("mask", StringComparison.Ordinal)))
        {
            for (var i = 0; i < n; i++)
            {
                Write(tensor, i, 1);
            }

            return tensor;
        }

        if (input.ElementType.IsFloatingPoint())
        {
            for (var i = 0; i < n; i++)
            {
                Write(tensor, i, distribution == InputDistribution.Uniform ? random.NextDouble() : Normal(random));
            }

            return tensor;
        }

        if (name.Contains("token_type", StringComparison.Ordinal) || name.Contains("segment", StringComparison.Ordinal))
        {
            return tensor;
        }

        if (name.Contains("position", StringComparison.Ordinal) && shape.Length > 0)
        {
            var last = shape[^1];
            for (var i = 0; i < n; i++)
            {
                Write(tensor, i, i % last);
            }

            return tensor;
        }

        var rows = GatherRows(model, input.Name) ?? 2;
        for (var i = 0; i < n; i++)
        {
            Write(tensor, i, random.NextInt64(rows));
        }

        return tensor;
    }

    /// <summary>Rows of the initializer a Gather indexes with this input (through shape-only ops), if any.</summary>
    internal static long? GatherRows(OnnxModel model, string inputName)
    {
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var frontier = new Queue<string>([inputName]);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long? rows = null;
        while (frontier.Count > 0)
        {
            var value = frontier.Dequeue();
            if (!seen.Add(value))
            {
                continue;
            }

            foreach (var node in model.Graph.Node)
            {
                if (node.OpType == "Gather" && node.Input.Count == 2 && node.Input[1] == value && initializers.TryGetValue(node.Input[0], out var table))
                {
                    var axis = node.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 0;
                    if (axis < 0)
                    {
                        axis += table.Dims.Count;
                    }

                    if (axis >= 0 && axis < table.Dims.Count)
                    {
                        rows = rows is null ? table.Dims[(int)axis] : Math.Min(rows.Value, table.Dims[(int)axis]);
                    }
                }
                else if (PassThroughOps.Contains(node.OpType) && node.Input.Count > 0 && node.Input[0] == value)
                {
                    foreach (var o in node.Output)
                    {
                        frontier.Enqueue(o);
                    }
                }
            }
        }

        return rows is > 0 ? rows : null;
    }

    private static double Normal(Random random)
    {
        // Box-Muller: portable and deterministic across runtimes, unlike relying on a library's sampler.
        var u1 = 1.0 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    private static void Write(Tensor t, int i, double v)
    {
        switch (t.ElementType)
        {
            case ElementType.Float: t.AsSpan<float>()[i] = (float)v; break;
            case ElementType.Float16: t.AsSpan<Half>()[i] = (Half)v; break;
            case ElementType.BFloat16: t.AsSpan<ushort>()[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)v) >> 16); break;
            case ElementType.Double: t.AsSpan<double>()[i] = v; break;
            case ElementType.Int64: t.AsSpan<long>()[i] = (long)v; break;
            case ElementType.Int32: t.AsSpan<int>()[i] = (int)v; break;
            case ElementType.Int16: t.AsSpan<short>()[i] = (short)v; break;
            case ElementType.UInt16: t.AsSpan<ushort>()[i] = (ushort)v; break;
            case ElementType.UInt32: t.AsSpan<uint>()[i] = (uint)v; break;
            case ElementType.UInt64: t.AsSpan<ulong>()[i] = (ulong)v; break;
            case ElementType.Int8: t.AsSpan<sbyte>()[i] = (sbyte)v; break;
            case ElementType.UInt8: t.Data[i] = (byte)v; break;
            case ElementType.Bool: t.Data[i] = v != 0 ? (byte)1 : (byte)0; break;
            default: throw new BatchwiseException($"Cannot generate {t.ElementType} values", "Use a numeric input.");
        }
    }
}
