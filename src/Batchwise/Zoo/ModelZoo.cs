using System.Globalization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Zoo;

/// <summary>One built-in model: a name, what it is, and how to build it from options.</summary>
/// <param name="Name">Name used as zoo:NAME.</param>
/// <param name="Description">One line: the architecture it follows.</param>
/// <param name="Options">Accepted options with their defaults (e.g. size=224).</param>
/// <param name="Build">Builds the model from parsed options.</param>
public sealed record ZooEntry(string Name, string Description, IReadOnlyDictionary<string, string> Options, Func<ZooOptions, OnnxModel> Build);

/// <summary>Options given as zoo:NAME?key=value&amp;key=value, with their defaults filled in.</summary>
public sealed class ZooOptions
{
    private readonly Dictionary<string, string> _values;

    /// <summary>Creates options from key/values; without <paramref name="withWeights"/> models are built as structure only (weights have shapes, no data).</summary>
    public ZooOptions(IReadOnlyDictionary<string, string> values, bool withWeights = true)
    {
        _values = new Dictionary<string, string>(values, StringComparer.OrdinalIgnoreCase);
        WithWeights = withWeights;
    }

    /// <summary>False when the model is built for counting only (no weight data).</summary>
    public bool WithWeights { get; }

    /// <summary>A graph builder seeded from the `seed` option (0 when the model has none).</summary>
    public GraphBuilder CreateBuilder(string graphName) =>
        new(graphName, _values.ContainsKey("seed") ? Int("seed", 0) : 0, WithWeights) { Opset = _values.ContainsKey("opset") ? Opset() : 17 };

    /// <summary>The `opset` option: the opset the model is exported at, 11 to 21 (as torch.onnx.export writes it at that opset).</summary>
    public long Opset()
    {
        var text = _values["opset"];
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v is >= 11 and <= 21
            ? v
            : throw new BatchwiseException($"Zoo option 'opset={text}' is not an opset from 11 to 21", "Write e.g. opset=11 or opset=17.");
    }

    /// <summary>An integer option, at least <paramref name="min"/>.</summary>
    public int Int(string key, int min = 1)
    {
        var text = _values[key];
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min
            ? v
            : throw new BatchwiseException($"Zoo option '{key}={text}' is not an integer of at least {min}", $"Write e.g. {key}={Math.Max(min, 1)}.");
    }

    /// <summary>An image size option: SIZE for a square input or HEIGHTxWIDTH (1600x1008, the NCHW order), each at least <paramref name="min"/>.</summary>
    public (int Height, int Width) ImageSize(string key, int min = 1)
    {
        var text = _values[key];
        var parts = text.Split('x', 'X');
        if (parts.Length is 1 or 2)
        {
            var dims = new int[parts.Length];
            var ok = true;
            for (var i = 0; i < parts.Length; i++)
            {
                ok &= int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]) && dims[i] >= min;
            }

            if (ok)
            {
                return (dims[0], dims[^1]);
            }
        }

        throw new BatchwiseException($"Zoo option '{key}={text}' is neither a size nor HEIGHTxWIDTH, each at least {min}", $"Write e.g. {key}=224 or {key}=1600x1008 (height x width).");
    }

    /// <summary>A string option.</summary>
    public string Text(string key) => _values[key];
}

/// <summary>The built-in models: built in code with seeded random weights and a dynamic batch axis.</summary>
public static class ModelZoo
{
    /// <summary>Prefix that marks a zoo model wherever a model is expected.</summary>
    public const string Prefix = "zoo:";

    private static readonly List<ZooEntry> Registry =
    [
        new("mlp", "A small multi-layer perceptron (Gemm, Relu, Softmax) for quick checks", new Dictionary<string, string> { ["features"] = "64", ["hidden"] = "256", ["classes"] = "10", ["seed"] = "0" }, Mlp.Build),
        ResNet.Resnet18,
        ResNet.Resnet50,
        MobileNetV2.Entry,
        YoloV8.Entry,
        Bert.Entry,
        UNet.Entry,
        DbNet.Entry,
        Crnn.Entry,
        Vit.Entry,
        Transport.Entry,
    ];

    /// <summary>Every built-in model.</summary>
    public static IReadOnlyList<ZooEntry> Entries => Registry;

    /// <summary>Adds a model to the zoo (each architecture file registers itself here).</summary>
    internal static void Add(ZooEntry entry) => Registry.Add(entry);

    /// <summary>Builds zoo:NAME?options (the prefix is optional here).</summary>
    public static OnnxModel Build(string spec) => Build(spec, withWeights: true);

    /// <summary>Builds zoo:NAME?options as structure only: every node and weight shape, no weight data. For shape inference, parameter and cost counts; engines cannot run it.</summary>
    public static OnnxModel BuildStructure(string spec) => Build(spec, withWeights: false);

    /// <summary>The entry named by zoo:NAME?options and its options with defaults filled in.</summary>
    public static (ZooEntry Entry, ZooOptions Options) Resolve(string spec, bool withWeights = true)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var text = spec.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase) ? spec[Prefix.Length..] : spec;
        var q = text.IndexOf('?', StringComparison.Ordinal);
        var name = q < 0 ? text : text[..q];
        var entry = Registry.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new BatchwiseException($"No zoo model named '{name}'", $"Use one of: {string.Join(", ", Registry.Select(e => e.Name))} (batchwise zoo list).");
        var values = new Dictionary<string, string>(entry.Options, StringComparer.OrdinalIgnoreCase);
        if (q >= 0)
        {
            foreach (var pair in text[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                var key = eq < 0 ? pair : pair[..eq];
                if (eq < 0 || !values.ContainsKey(key))
                {
                    var known = entry.Options.Count == 0 ? "none" : string.Join(", ", entry.Options.Select(o => $"{o.Key}={o.Value}"));
                    throw new BatchwiseException($"Zoo model '{entry.Name}' has no option '{pair}'", $"Options (with defaults): {known}.");
                }

                values[key] = pair[(eq + 1)..];
            }
        }

        return (entry, new ZooOptions(values, withWeights));
    }

    private static OnnxModel Build(string spec, bool withWeights)
    {
        var (entry, options) = Resolve(spec, withWeights);
        return entry.Build(options);
    }
}

/// <summary>Loads a model from a file path or zoo:NAME.</summary>
public static class ModelSource
{
    /// <summary>Loads <paramref name="spec"/>: zoo:NAME[?options], a path to a .onnx file, or a saved engine (.bwengine).</summary>
    public static OnnxModel Load(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.StartsWith(ModelZoo.Prefix, StringComparison.OrdinalIgnoreCase))
        {
            return ModelZoo.Build(spec);
        }

        var reading = System.Diagnostics.Stopwatch.GetTimestamp();
        var model = SavedEngineFile.IsSavedEngine(spec) && File.Exists(spec) ? SavedEngineFile.ReadModel(spec).Model : OnnxModel.Load(spec);
        model.ReadSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(reading).TotalSeconds;
        return model;
    }
}
