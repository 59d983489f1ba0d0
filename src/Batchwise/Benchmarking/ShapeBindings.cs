using System.Globalization;
using Batchwise.Onnx;

namespace Batchwise.Benchmarking;

/// <summary>
/// Sizes for dynamic dimensions other than the batch, from --shape values. Two forms:
/// <c>SYMBOL=SIZE</c> binds a dimension symbol in every input (<c>seq=128</c>), and
/// <c>INPUT:D0,D1,...</c> gives one input's whole shape, where <c>batch</c> (or <c>N</c>) stands for the batch size
/// (<c>input_ids:batch,128</c>).
/// </summary>
public sealed class ShapeBindings
{
    /// <summary>Words that stand for the batch size in an INPUT:dims shape.</summary>
    public static readonly IReadOnlySet<string> BatchWords = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "batch", "n", "b" };

    private ShapeBindings(IReadOnlyDictionary<string, long> symbols, IReadOnlyDictionary<string, IReadOnlyList<string>> inputShapes)
    {
        Symbols = symbols;
        InputShapes = inputShapes;
    }

    /// <summary>No bindings.</summary>
    public static ShapeBindings None { get; } = new(new Dictionary<string, long>(), new Dictionary<string, IReadOnlyList<string>>());

    /// <summary>Symbol → size.</summary>
    public IReadOnlyDictionary<string, long> Symbols { get; }

    /// <summary>Input → its dimensions as written (numbers or a batch word).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> InputShapes { get; }

    /// <summary>The bindings as the user wrote them (for reports).</summary>
    public IReadOnlyList<string> Text =>
        Symbols.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Key}={s.Value}")).Concat(InputShapes.Select(s => $"{s.Key}:{string.Join(',', s.Value)}")).ToList();

    /// <summary>Parses --shape values; throws a <see cref="BatchwiseException"/> naming the bad one.</summary>
    public static ShapeBindings Parse(IEnumerable<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var symbols = new Dictionary<string, long>(StringComparer.Ordinal);
        var shapes = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        const string Hint = "Write --shape SYMBOL=SIZE (e.g. --shape seq=128) or --shape INPUT:DIMS with `batch` for the batch axis (e.g. --shape input_ids:batch,128).";
        foreach (var raw in values)
        {
            var value = raw.Trim();
            // The last colon splits INPUT:DIMS, so names such as TensorFlow's "input:0" work.
            var colon = value.LastIndexOf(':');
            var eq = value.IndexOf('=', StringComparison.Ordinal);
            if (colon > 0 && !value[colon..].Contains('=', StringComparison.Ordinal))
            {
                var name = value[..colon];
                var dims = value[(colon + 1)..].Split(',', StringSplitOptions.TrimEntries);
                foreach (var d in dims)
                {
                    if (!BatchWords.Contains(d) && !(long.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0))
                    {
                        throw new BatchwiseException($"--shape '{raw}': dimension '{d}' is neither a positive integer nor `batch`", Hint);
                    }
                }

                if (!shapes.TryAdd(name, dims))
                {
                    throw new BatchwiseException($"--shape gives input '{name}' twice", "Give each input's shape once.");
                }
            }
            else if (eq > 0)
            {
                var symbol = value[..eq].Trim();
                var text = value[(eq + 1)..].Trim();
                if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var size) || size <= 0)
                {
                    throw new BatchwiseException($"--shape '{raw}': size '{text}' is not a positive integer", Hint);
                }

                if (!symbols.TryAdd(symbol, size))
                {
                    throw new BatchwiseException($"--shape binds '{symbol}' twice", "Bind each symbol once.");
                }
            }
            else
            {
                throw new BatchwiseException($"--shape '{raw}' is neither SYMBOL=SIZE nor INPUT:DIMS", Hint);
            }
        }

        return new ShapeBindings(symbols, shapes);
    }

    /// <summary>
    /// Resolves every input's concrete shape at <paramref name="batchSize"/>; the batch axis (dimension 0 when
    /// <paramref name="axis"/> is batchable) takes the batch size. Explains any dimension left unknown.
    /// </summary>
    public IReadOnlyList<long[]> Resolve(IReadOnlyList<TensorSpec> inputs, BatchAxis axis, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(axis);
        foreach (var name in InputShapes.Keys.Where(n => inputs.All(i => i.Name != n)))
        {
            throw new BatchwiseException($"--shape names input '{name}', which the model does not have", $"The model's inputs: {string.Join(", ", inputs)}.");
        }

        var knownSymbols = inputs.SelectMany(i => i.Shape).Where(d => d.IsDynamic && d.Symbol is not null).Select(d => d.Symbol!).ToHashSet(StringComparer.Ordinal);
        foreach (var symbol in Symbols.Keys.Where(s => !knownSymbols.Contains(s)))
        {
            var known = knownSymbols.Count == 0 ? "it has no named dynamic dimensions" : $"its symbols: {string.Join(", ", knownSymbols)}";
            throw new BatchwiseException($"--shape binds '{symbol}', which no input of the model uses", $"Check the spelling; {known} (inputs: {string.Join(", ", inputs)}).");
        }

        return inputs.Select(i => ResolveOne(i, axis, batchSize)).ToList();
    }

    private long[] ResolveOne(TensorSpec input, BatchAxis axis, int batchSize)
    {
        var shape = new long[input.Shape.Count];
        if (InputShapes.TryGetValue(input.Name, out var given))
        {
            if (given.Count != input.Shape.Count)
            {
                throw new BatchwiseException($"--shape {input.Name}:{string.Join(',', given)} has {given.Count} dimensions; the input has {input.Shape.Count} ({input})", $"Give {input.Shape.Count} dimensions.");
            }

            for (var d = 0; d < shape.Length; d++)
            {
                shape[d] = BatchWords.Contains(given[d]) ? batchSize : long.Parse(given[d], CultureInfo.InvariantCulture);
                var declared = input.Shape[d];
                if (!declared.IsDynamic && declared.Value != shape[d])
                {
                    throw new BatchwiseException($"--shape {input.Name}:{string.Join(',', given)} sets dimension {d} to {shape[d]}, but the model fixes it at {declared.Value} ({input})", "Leave fixed dimensions as the model declares them.");
                }
            }

            return shape;
        }

        for (var d = 0; d < shape.Length; d++)
        {
            var dim = input.Shape[d];
            if (!dim.IsDynamic)
            {
                shape[d] = dim.Value!.Value;
            }
            else if (d == 0 && axis.IsBatchable)
            {
                shape[d] = batchSize;
            }
            else if (dim.Symbol is not null && Symbols.TryGetValue(dim.Symbol, out var size))
            {
                shape[d] = size;
            }
            else
            {
                var dims = string.Join(',', input.Shape.Select((x, k) => k == 0 && axis.IsBatchable ? "batch" : x.IsDynamic ? (k == d ? "SIZE" : x.ToString()) : x.ToString()));
                var symbolHint = string.IsNullOrEmpty(dim.Symbol) ? string.Empty : $"--shape {dim.Symbol}=SIZE or ";
                throw new BatchwiseException(
                    $"Input '{input.Name}' has dynamic dimension {d} ('{dim}') and no size for it ({input})",
                    $"Give it one with {symbolHint}--shape {input.Name}:{dims} (e.g. SIZE=128).");
            }
        }

        return shape;
    }
}
