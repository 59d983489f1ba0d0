using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>
/// Makes a model's inputs for a benchmark: random data of the right element type from a seed (token ids in the
/// vocabulary's range, masks as ones), or real data from .npy files tiled along the batch axis.
/// </summary>
public sealed class InputGenerator
{
    /// <summary>Range of integer inputs whose valid range the graph does not reveal: [0, 100).</summary>
    public const long DefaultIntegerRange = 100;

    private readonly OnnxModel _model;
    private readonly int _seed;
    private readonly IReadOnlyDictionary<string, Tensor> _data;

    /// <summary>Creates a generator; <paramref name="data"/> maps input names to real data (from .npy files).</summary>
    public InputGenerator(OnnxModel model, int seed, IReadOnlyDictionary<string, Tensor>? data = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _seed = seed;
        _data = data ?? new Dictionary<string, Tensor>();
        foreach (var name in _data.Keys.Where(n => model.Inputs.All(i => i.Name != n)))
        {
            throw new BatchwiseException($"--input names '{name}', which the model does not have", $"The model's inputs: {string.Join(", ", model.Inputs)}.");
        }

        foreach (var (name, tensor) in _data)
        {
            var spec = model.Inputs.First(i => i.Name == name);
            if (tensor.ElementType != spec.ElementType)
            {
                throw new BatchwiseException($"Data for input '{name}' is {tensor.ElementType.ShortName()}; the model wants {spec.ElementType.ShortName()}", $"Convert it with array.astype('{spec.ElementType.ShortName()}') before numpy.save.");
            }
        }
    }

    /// <summary>Reads --input NAME=FILE.npy values into a name → tensor map.</summary>
    public static IReadOnlyDictionary<string, Tensor> ReadDataFiles(IEnumerable<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var value in values)
        {
            var eq = value.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == value.Length - 1)
            {
                throw new BatchwiseException($"--input '{value}' is not NAME=FILE.npy", "Write e.g. --input images=batch.npy.");
            }

            if (!result.TryAdd(value[..eq], NpyReader.Read(value[(eq + 1)..])))
            {
                throw new BatchwiseException($"--input gives '{value[..eq]}' twice", "Give each input's data once.");
            }
        }

        return result;
    }

    /// <summary>The vocabulary size of an integer input that indexes an embedding table (a Gather on an initializer), if any.</summary>
    public static long? VocabularySize(OnnxModel model, string input)
    {
        ArgumentNullException.ThrowIfNull(model);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal) { input };

        // Follow Casts (exporters often cast int64 ids to int32 before the Gather).
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "Cast" && n.Input.Count > 0 && n.Input[0] == input))
        {
            names.UnionWith(node.Output);
        }

        foreach (var node in model.Graph.Node.Where(n => n.OpType == "Gather" && n.Input.Count == 2 && names.Contains(n.Input[1])))
        {
            if (initializers.TryGetValue(node.Input[0], out var table) && table.Dims.Count > 0)
            {
                var axis = node.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 0;
                return table.Dims[(int)(axis < 0 ? axis + table.Dims.Count : axis)];
            }
        }

        return null;
    }

    /// <summary>Describes how each input is filled (for reports).</summary>
    public IReadOnlyDictionary<string, string> Describe() =>
        _model.Inputs.ToDictionary(i => i.Name, i => _data.ContainsKey(i.Name) ? "npy data" : DescribeRandom(i), StringComparer.Ordinal);

    /// <summary>Makes the inputs (in model input order) at the given concrete shapes.</summary>
    public IReadOnlyList<Tensor> Generate(IReadOnlyList<long[]> shapes)
    {
        ArgumentNullException.ThrowIfNull(shapes);
        var inputs = _model.Inputs;
        var result = new Tensor[inputs.Count];
        for (var i = 0; i < inputs.Count; i++)
        {
            result[i] = _data.TryGetValue(inputs[i].Name, out var data)
                ? Tile(inputs[i], data, shapes[i])
                : Random(inputs[i], shapes[i], new Random(InputSeed(_seed, i)));
        }

        return result;
    }

    private static bool IsMask(TensorSpec input) => input.Name.Contains("mask", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The seed of input <paramref name="index"/>'s generator: the same in every process (HashCode.Combine, used before,
    /// is randomized per process, so "seeded" inputs differed from run to run).
    /// </summary>
    internal static int InputSeed(int seed, int index) => unchecked((seed * 7919) + index);

    private string DescribeRandom(TensorSpec input)
    {
        if (IsMask(input))
        {
            return "ones (mask)";
        }

        if (input.ElementType.IsFloatingPoint())
        {
            return "uniform [-1, 1)";
        }

        if (input.ElementType == ElementType.Bool)
        {
            return "random bool";
        }

        var (lo, hi, why) = IntegerRange(input);
        return $"integers in [{lo}, {hi}) ({why})";
    }

    private (long Low, long High, string Why) IntegerRange(TensorSpec input)
    {
        var vocab = VocabularySize(_model, input.Name);
        if (vocab is > 0)
        {
            return (0, vocab.Value, "vocabulary size from its Gather");
        }

        var high = input.ElementType switch
        {
            ElementType.UInt8 => 256,
            ElementType.Int8 => 128,
            _ => DefaultIntegerRange,
        };
        return (0, high, "default range");
    }

    private Tensor Random(TensorSpec input, long[] shape, Random rng)
    {
        var t = Tensor.Zeros(input.ElementType, shape);
        var n = (int)t.ElementCount;
        var mask = IsMask(input);
        switch (input.ElementType)
        {
            case ElementType.Float:
                Fill(t.AsSpan<float>(), n, 1f, mask, () => (float)((rng.NextDouble() * 2) - 1));
                break;
            case ElementType.Double:
                Fill(t.AsSpan<double>(), n, 1.0, mask, () => (rng.NextDouble() * 2) - 1);
                break;
            case ElementType.Float16:
                Fill(t.AsSpan<Half>(), n, (Half)1, mask, () => (Half)((rng.NextDouble() * 2) - 1));
                break;
            case ElementType.BFloat16:
                Fill(t.AsSpan<ushort>(), n, (ushort)0x3F80, mask, () => (ushort)(BitConverter.SingleToInt32Bits((float)((rng.NextDouble() * 2) - 1)) >> 16));
                break;
            case ElementType.Bool:
                Fill(t.AsSpan<byte>(), n, (byte)1, mask, () => (byte)rng.Next(2));
                break;
            default:
                FillIntegers(t, n, mask, IntegerRange(input), rng);
                break;
        }

        return t;
    }

    private static void FillIntegers(Tensor t, int n, bool mask, (long Low, long High, string Why) range, Random rng)
    {
        long Next() => mask ? 1 : rng.NextInt64(range.Low, range.High);
        switch (t.ElementType)
        {
            case ElementType.Int64: Fill(t.AsSpan<long>(), n, 1L, mask, Next); break;
            case ElementType.Int32: Fill(t.AsSpan<int>(), n, 1, mask, () => (int)Next()); break;
            case ElementType.Int16: Fill(t.AsSpan<short>(), n, (short)1, mask, () => (short)Next()); break;
            case ElementType.Int8: Fill(t.AsSpan<sbyte>(), n, (sbyte)1, mask, () => (sbyte)Next()); break;
            case ElementType.UInt8: Fill(t.AsSpan<byte>(), n, (byte)1, mask, () => (byte)Next()); break;
            case ElementType.UInt16: Fill(t.AsSpan<ushort>(), n, (ushort)1, mask, () => (ushort)Next()); break;
            case ElementType.UInt32: Fill(t.AsSpan<uint>(), n, 1u, mask, () => (uint)Next()); break;
            case ElementType.UInt64: Fill(t.AsSpan<ulong>(), n, 1ul, mask, () => (ulong)Next()); break;
            default: throw new BatchwiseException($"Batchwise cannot generate {t.ElementType.ShortName()} inputs", "Feed this input from a .npy file with --input NAME=FILE.npy.");
        }
    }

    private static void Fill<T>(Span<T> span, int n, T one, bool mask, Func<T> next)
    {
        for (var i = 0; i < n; i++)
        {
            span[i] = mask ? one : next();
        }
    }

    private static Tensor Tile(TensorSpec input, Tensor data, long[] shape)
    {
        if (data.Shape.SequenceEqual(shape))
        {
            return data;
        }

        var sample = shape.Skip(1).ToArray();
        var oneSample = data.Shape.SequenceEqual(sample);
        var manySamples = data.Shape.Length == shape.Length && data.Shape.Skip(1).SequenceEqual(sample) && data.Shape[0] > 0;
        if (shape.Length == 0 || (!oneSample && !manySamples))
        {
            throw new BatchwiseException(
                $"Data for input '{input.Name}' has shape {Tensor.ShapeText(data.Shape)}; at this batch size the input is {Tensor.ShapeText(shape)}",
                $"Save either one sample {Tensor.ShapeText(sample)} or several samples [k, {string.Join(", ", sample)}]; Batchwise repeats them along the batch axis.");
        }

        // Repeat the given samples along the batch axis until the batch is full.
        var t = Tensor.Zeros(input.ElementType, shape);
        var sampleBytes = Tensor.ElementCountOf(sample) * input.ElementType.SizeOf();
        var available = oneSample ? 1 : data.Shape[0];
        for (long b = 0; b < shape[0]; b++)
        {
            Array.Copy(data.Data, b % available * sampleBytes, t.Data, b * sampleBytes, sampleBytes);
        }

        return t;
    }
}
