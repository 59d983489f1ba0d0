using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>How `--precision int8` calibrates a float model: the data (DIR or random:N), the method and the activations' scheme.</summary>
/// <param name="Data">--calibration as written: a folder of .npy samples, or random:N.</param>
/// <param name="Method">--calibration-method.</param>
/// <param name="Symmetric">--int8-activations symmetric: zero point 128 (<see cref="Int8Quantization.SymmetricActivations"/>); false: asymmetric.</param>
public sealed record Int8Calibration(string Data, CalibrationMethod Method, bool Symmetric = false)
{
    /// <summary>The default data: eight seeded random samples (real data gives better scales).</summary>
    public const string DefaultData = "random:8";

    /// <summary>random:8 with minmax.</summary>
    public static Int8Calibration Default { get; } = new(DefaultData, CalibrationMethod.MinMax);

    /// <summary>
    /// A model already quantized (QDQ, or dynamic int8) at `--precision int8`: it runs with the scales it carries, nothing
    /// calibrated (<see cref="CalibratedInt8.OptionsFor"/> puts it in the options).
    /// </summary>
    public static Int8Calibration Stored { get; } = new("the model's own scales", CalibrationMethod.MinMax);

    /// <summary>--int8-activations as written: symmetric or asymmetric.</summary>
    public string Scheme => Symmetric ? "symmetric" : "asymmetric";

    /// <summary>What a session of this precision runs, for engine descriptions and reports: "int8 (QDQ, calibrated on random:8, minmax)", with ", symmetric activations" where they are.</summary>
    public string Describe() => this == Stored ? "int8 (QDQ as stored: the model's own scales, not calibrated)"
        : $"int8 (QDQ, calibrated on {Data}, {Method.ToString().ToLowerInvariant()}{(Symmetric ? ", symmetric activations" : string.Empty)})";

    /// <summary>Parses --int8-activations: true for symmetric, false for asymmetric.</summary>
    public static bool ParseSymmetric(string text) => text.Trim().ToLowerInvariant() switch
    {
        "symmetric" => true,
        "asymmetric" => false,
        _ => throw new BatchwiseException($"Unknown int8 activation scheme '{text}'", "Use asymmetric or symmetric."),
    };

    /// <summary>Parses --calibration-method: minmax, percentile or entropy.</summary>
    public static CalibrationMethod ParseMethod(string text) => text.Trim().ToLowerInvariant() switch
    {
        "minmax" => CalibrationMethod.MinMax,
        "percentile" => CalibrationMethod.Percentile,
        "entropy" => CalibrationMethod.Entropy,
        _ => throw new BatchwiseException($"Unknown calibration method '{text}'", "Use minmax, percentile or entropy."),
    };
}

/// <summary>
/// `--precision int8` on a float model: the model quantized when a session loads it, by the transforms `batchwise
/// optimize --int8` runs (opset conversion where needed, clean-up, <see cref="Int8Quantization"/>), with its activation
/// ranges cached beside the timing cache (by model hash, calibration data and method), so a second session of the same
/// model does not calibrate again.
/// </summary>
public static class CalibratedInt8
{
    /// <summary>Where a session's one-line notes go (which calibration ran, or that cached ranges were used); standard error by default.</summary>
    public static Action<string> Notes { get; set; } = line => Console.Error.WriteLine(line);

    /// <summary>
    /// The QDQ model for <paramref name="model"/> (left unchanged), quantized as <paramref name="calibration"/> says.
    /// <paramref name="reduceRange"/>: weights in 7 bits (ONNX Runtime on a CPU without VNNI), false on a GPU.
    /// </summary>
    public static OnnxModel Quantize(OnnxModel model, Int8Calibration calibration, bool reduceRange)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(calibration);
        if (Analysis.QuantizedGraph.IsQuantized(model))
        {
            RefuseCalibrationOf(model, calibration);
            Notes($"int8: '{model.Name}' is already quantized: it runs with its own scales, nothing calibrated");
            return model;
        }

        if (calibration == Int8Calibration.Stored)
        {
            throw new BatchwiseException($"--precision int8: '{model.Name}' is not quantized, so it has no scales of its own to run with", "Quantize it as it loads (--calibration DIR|random:N), or with `batchwise optimize MODEL --int8 -o OUT.onnx`.");
        }

        var options = new OptimizeOptions { Int8 = true, Calibration = calibration.Data, CalibrationMethod = calibration.Method, Int8Symmetric = calibration.Symmetric };
        var transforms = options.CreateTransforms(model.Opset);
        var quantizer = (Int8Quantization)transforms[^1];
        var cachePath = CachePath(model, calibration);
        var cached = ReadRanges(cachePath);
        var int8 = new Int8Quantization(quantizer.Calibration, quantizer.Method) { ReduceRange = reduceRange, Flag = "--precision int8", Ranges = cached, SymmetricActivations = calibration.Symmetric };
        var result = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        foreach (var t in transforms.Take(transforms.Count - 1))
        {
            t.Apply(result);
        }

        var summary = int8.Apply(result);
        var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (cached is not null)
        {
            Notes($"int8: activation ranges read from the cache, no recalibration ({cachePath})");
            return result;
        }

        WriteRanges(cachePath, int8.Ranges!);
        var hint = calibration.Data.StartsWith("random:", StringComparison.OrdinalIgnoreCase) ? "; real data gives better scales: a folder of .npy samples (--calibration DIR, or a served model's \"calibration\" key)" : string.Empty;
        Notes(string.Create(CultureInfo.InvariantCulture, $"int8: calibrated on {calibration.Data} ({calibration.Method.ToString().ToLowerInvariant()}) in {seconds:F1} s: {summary}{hint}"));
        return result;
    }

    /// <summary>
    /// <paramref name="options"/> for running <paramref name="model"/>: at `--precision int8` a model already quantized
    /// (QDQ from `optimize --int8` or another tool, or dynamic int8) runs with its own scales, so its options say
    /// <see cref="Int8Calibration.Stored"/> (and reports "int8 (QDQ as stored ...)", not a calibration that never ran);
    /// calibration options given for such a model are refused. Other options are returned as they are.
    /// </summary>
    public static Engines.EngineOptions OptionsFor(Engines.EngineOptions options, OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(model);
        if (options.Precision != Engines.Precision.Int8 || model.SavedEngine is not null || !Analysis.QuantizedGraph.IsQuantized(model))
        {
            return options;
        }

        RefuseCalibrationOf(model, options.Calibration);
        return options with { Calibration = Int8Calibration.Stored };
    }

    private static void RefuseCalibrationOf(OnnxModel model, Int8Calibration calibration)
    {
        if (calibration != Int8Calibration.Default && calibration != Int8Calibration.Stored)
        {
            throw new BatchwiseException($"--precision int8: '{model.Name}' is already quantized, so there is nothing to calibrate ({calibration.Describe()} was asked for)", "Drop --calibration, --calibration-method and --int8-activations: the model runs with its own scales (or quantize its float original with them).");
        }
    }

    /// <summary>
    /// The cache file of a model's ranges: $BATCHWISE_CACHE_DIR/int8 (else $XDG_CACHE_HOME/batchwise/int8, else
    /// ~/.cache/batchwise/int8), named by a hash of the model's bytes, the calibration data (a folder's files by name,
    /// size and time), the method and, for symmetric activations, the scheme (whose Relu outputs are ranges of their own;
    /// an asymmetric file keeps the name it had before the scheme existed).
    /// </summary>
    public static string CachePath(OnnxModel model, Int8Calibration calibration)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(calibration);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(model.ToBytes());
        hash.AppendData(Encoding.UTF8.GetBytes($"\n{calibration.Method}\n{calibration.Data}\n{(calibration.Symmetric ? "symmetric\n" : string.Empty)}"));
        if (Directory.Exists(calibration.Data))
        {
            foreach (var file in Directory.GetFiles(calibration.Data, "*.npy").Order(StringComparer.Ordinal))
            {
                var info = new FileInfo(file);
                hash.AppendData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{info.Name}:{info.Length}:{info.LastWriteTimeUtc.Ticks}\n")));
            }
        }

        var name = new string(model.Name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').Take(40).ToArray());
        return Path.Combine(CacheDirectory.Root, "int8", $"{name}-{Convert.ToHexStringLower(hash.GetHashAndReset())[..16]}.json");
    }

    private static Dictionary<string, (float Min, float Max)>? ReadRanges(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            var stored = JsonSerializer.Deserialize(File.ReadAllBytes(path), Int8RangesJson.Default.DictionaryStringSingleArray);
            return stored?.Where(p => p.Value.Length == 2).ToDictionary(p => p.Key, p => (p.Value[0], p.Value[1]), StringComparer.Ordinal);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            Notes($"int8: the cached ranges '{path}' cannot be read ({e.Message}); calibrating again");
            return null;
        }
    }

    private static void WriteRanges(string path, IReadOnlyDictionary<string, (float Min, float Max)> ranges)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var stored = ranges.ToDictionary(p => p.Key, p => new[] { p.Value.Min, p.Value.Max }, StringComparer.Ordinal);
            var tmp = $"{path}.{Guid.NewGuid():N}.tmp"; // serve's instances load at once: each writes its own, the last move wins
            File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(stored, Int8RangesJson.Default.DictionaryStringSingleArray));
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // A read-only cache costs a calibration per session, nothing else.
            Notes($"int8: the ranges cannot be cached at '{path}' ({e.Message}); set BATCHWISE_CACHE_DIR to a writable folder");
        }
    }
}

/// <summary>The cached ranges: value name to [min, max].</summary>
[JsonSerializable(typeof(Dictionary<string, float[]>))]
internal sealed partial class Int8RangesJson : JsonSerializerContext;
