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
    public IReadOnlyList<long[]> Resolve(IReadOnlyList<TensorSpec> inputs, BatchAxis axis, int batchSize) => Resolve(inputs, axis, batchSize, strict: true);

    /// <summary>
    /// Resolves every input's concrete shape at <paramref name="batchSize"/>; without <paramref name="strict"/>, bindings
    /// for inputs or symbols the model does not have are ignored (a transformed model that fixed some of them).
    /// </summary>
    public IReadOnlyList<long[]> Resolve(IReadOnlyList<TensorSpec> inputs, BatchAxis axis, int batchSize, bool strict)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(axis);
        foreach (var name in InputShapes.Keys.Where(n => strict && inputs.All(i => i.Name != n)))
        {
            throw new BatchwiseException($"--shape names input '{name}', which the model does not have", $"The model's inputs: {string.Join(", ", inputs)}.");
        }

        var knownSymbols = inputs.SelectMany(i => i.Shape).Where(d => d.IsDynamic && d.Symbol is not null).Select(d => d.Symbol!).ToHashSet(StringComparer.Ordinal);
        foreach (var symbol in Symbols.Keys.Where(s => strict && !knownSymbols.Contains(s)))
        {
            var known = knownSymbols.Count == 0 ? "it has no named dynamic dimensions" : $"its symbols: {string.Join(", ", knownSymbols)}";
            throw new BatchwiseException($"--shape binds '{symbol}', which no input of the model uses", $"Check the spelling; {known} (inputs: {string.Join(", ", inputs)}).");
        }

        var missing = inputs.SelectMany(i => Unsized(i, axis).Select(d => (Input: i, Dim: d))).ToList();
        if (missing.Count > 0)
        {
            throw MissingSizes(inputs, axis, missing);
        }

        return inputs.Select(i => ResolveOne(i, axis, batchSize)).ToList();
    }

    /// <summary>
    /// A copy of <paramref name="model"/> whose inputs declare the bound sizes: every dynamic dimension but the batch
    /// axis fixed, so what analyses the copy cannot fall back to a default size. Throws, naming every dynamic
    /// dimension at once, when one has no size.
    /// </summary>
    public OnnxModel Pin(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var axis = model.FindBatchAxis();
        var shapes = Resolve(model.Inputs, axis, 1);
        var proto = model.Proto.Clone();
        var inputs = model.Inputs;
        for (var i = 0; i < inputs.Count; i++)
        {
            var dims = proto.Graph.Input.Single(v => v.Name == inputs[i].Name).Type.TensorType.Shape.Dim;
            for (var d = axis.IsBatchable ? 1 : 0; d < dims.Count; d++)
            {
                dims[d] = new global::Onnx.TensorShapeProto.Types.Dimension { DimValue = shapes[i][d] };
            }
        }

        return OnnxModel.FromProto(proto, model.Name);
    }

    /// <summary>
    /// These bindings plus an image size: the height and width (dimensions 2 and 3) of every rank-4 input where they are
    /// dynamic, by symbol where they have one. Refuses a --shape that sizes them otherwise.
    /// </summary>
    public ShapeBindings WithImageSize(IReadOnlyList<TensorSpec> inputs, long height, long width)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var symbols = new Dictionary<string, long>(Symbols, StringComparer.Ordinal);
        var shapes = new Dictionary<string, IReadOnlyList<string>>(InputShapes, StringComparer.Ordinal);
        foreach (var input in inputs.Where(i => i.Shape.Count == 4))
        {
            var wanted = new[] { height, width };
            if (shapes.TryGetValue(input.Name, out var given))
            {
                if (given.Count == 4 && (given[2] != wanted[0].ToString(CultureInfo.InvariantCulture) || given[3] != wanted[1].ToString(CultureInfo.InvariantCulture)))
                {
                    throw new BatchwiseException($"--shape {input.Name}:{string.Join(',', given)} and --input-size {width}x{height} give '{input.Name}' two sizes", "Give the size once.");
                }

                continue;
            }

            var anonymous = false;
            for (var d = 2; d < 4; d++)
            {
                var dim = input.Shape[d];
                if (!dim.IsDynamic)
                {
                    continue;
                }

                if (dim.Symbol is { Length: > 0 } s)
                {
                    if (symbols.TryGetValue(s, out var bound) && bound != wanted[d - 2])
                    {
                        throw new BatchwiseException($"--shape {s}={bound} and --input-size {width}x{height} give dimension '{s}' two sizes", "Give the size once.");
                    }

                    symbols[s] = wanted[d - 2];
                }
                else
                {
                    anonymous = true;
                }
            }

            if (anonymous)
            {
                shapes[input.Name] = input.Shape.Select((x, k) =>
                    k >= 2 ? wanted[k - 2].ToString(CultureInfo.InvariantCulture)
                    : x.Value is { } v ? v.ToString(CultureInfo.InvariantCulture)
                    : k == 0 ? "batch"
                    : x.Symbol is { Length: > 0 } s && symbols.TryGetValue(s, out var b) ? b.ToString(CultureInfo.InvariantCulture)
                    : throw new BatchwiseException($"Input '{input.Name}' {input.ShapeText} has a dynamic channel dimension", $"Give its whole shape: --shape {input.Name}:batch,3,{height},{width}.")).ToList();
            }
        }

        return new ShapeBindings(symbols, shapes);
    }

    // The dimensions of one input nothing sizes: dynamic, not the batch axis, no INPUT:DIMS and no symbol binding.
    private IEnumerable<int> Unsized(TensorSpec input, BatchAxis axis)
    {
        if (InputShapes.ContainsKey(input.Name))
        {
            yield break;
        }

        for (var d = 0; d < input.Shape.Count; d++)
        {
            var dim = input.Shape[d];
            if (dim.IsDynamic && !(d == 0 && axis.IsBatchable) && !(dim.Symbol is { Length: > 0 } s && Symbols.ContainsKey(s)))
            {
                yield return d;
            }
        }
    }

    // One error for every unsized dimension, with a --shape command that works as printed: SYMBOL=SIZE for named
    // dimensions, INPUT:DIMS (every dimension spelled, `batch` for the batch axis) for an input with an unnamed one;
    // example sizes 224 for an image's height and width, 128 otherwise.
    private BatchwiseException MissingSizes(IReadOnlyList<TensorSpec> inputs, BatchAxis axis, List<(TensorSpec Input, int Dim)> missing)
    {
        static long Example(TensorSpec input, int d) => input.Shape.Count == 4 && d >= 2 ? 224 : 128;
        var symbolValues = new Dictionary<string, long>(Symbols, StringComparer.Ordinal);
        foreach (var (input, d) in missing)
        {
            if (input.Shape[d].Symbol is { Length: > 0 } s)
            {
                symbolValues.TryAdd(s, Example(input, d));
            }
        }

        var wholeInputs = missing.Where(m => string.IsNullOrEmpty(m.Input.Shape[m.Dim].Symbol)).Select(m => m.Input).Distinct().ToList();
        var flags = new List<string>();
        foreach (var input in wholeInputs)
        {
            var dims = input.Shape.Select((x, k) =>
                k == 0 && axis.IsBatchable ? "batch"
                : x.Value is { } v ? v.ToString(CultureInfo.InvariantCulture)
                : x.Symbol is { Length: > 0 } s ? symbolValues[s].ToString(CultureInfo.InvariantCulture)
                : Example(input, k).ToString(CultureInfo.InvariantCulture));
            flags.Add($"--shape {input.Name}:{string.Join(',', dims)}");
        }

        var symbolsNeeded = missing.Where(m => !wholeInputs.Contains(m.Input)).Select(m => m.Input.Shape[m.Dim].Symbol!).Distinct(StringComparer.Ordinal);
        flags.InsertRange(0, symbolsNeeded.Select(s => string.Create(CultureInfo.InvariantCulture, $"--shape {s}={symbolValues[s]}")));

        var where = string.Join("; ", missing.GroupBy(m => m.Input).Select(g =>
            $"'{g.Key.Name}' {g.Key.ShapeText} dimension{(g.Count() == 1 ? string.Empty : "s")} {string.Join(" and ", g.Select(m => $"{m.Dim} ('{m.Input.Shape[m.Dim]}')"))}"));
        return new BatchwiseException(
            $"{missing.Count} dynamic dimension{(missing.Count == 1 ? " has" : "s have")} no size: {where}",
            $"Give {(missing.Count == 1 ? "it" : "them")} the sizes you deploy at, e.g. {string.Join(' ', flags)}.");
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
            shape[d] = dim.Value ?? (d == 0 && axis.IsBatchable ? batchSize : Symbols[dim.Symbol!]);
        }

        return shape;
    }
}
