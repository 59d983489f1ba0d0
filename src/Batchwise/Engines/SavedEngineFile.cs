using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Onnx;
using Batchwise.Operators;
using Google.Protobuf;

namespace Batchwise.Engines;

/// <summary>
/// What a saved engine was built from and for: the engine and its options, the model's hash, and the environment
/// (device, driver and library versions, Batchwise's own) it is valid in. A file whose environment differs is refused.
/// </summary>
/// <param name="Format">Always "batchwise-engine".</param>
/// <param name="Schema">The file layout's version.</param>
/// <param name="Engine">The engine that built it (cuda).</param>
/// <param name="BatchwiseVersion">Batchwise's version.</param>
/// <param name="Created">When it was written.</param>
/// <param name="ModelName">The model's name.</param>
/// <param name="ModelSha256">SHA-256 of the model bytes it carries (its structure: float weights the engine stores device-ready are left out).</param>
/// <param name="Precision">fp32, fp16 or int8 (the model it carries then is the QDQ model quantized at build).</param>
/// <param name="Tf32">TF32 allowed for fp32.</param>
/// <param name="CudaGraph">Runs replay CUDA graphs.</param>
/// <param name="BatchProfiles">The batch profiles whose plans it was built with.</param>
/// <param name="ShapeProfiles">The shape profiles it was built with, as written on the command line.</param>
/// <param name="Environment">Device, compute capability, driver and library versions, by name.</param>
/// <param name="Calibration">For int8: the calibration data the carried model's scales came from (--calibration as written).</param>
/// <param name="CalibrationMethod">For int8: the calibration method (minmax, percentile, entropy).</param>
/// <param name="Int8Activations">For int8: the activations' scheme (asymmetric, symmetric); a file written before the scheme existed has none and is asymmetric.</param>
public sealed record SavedEngineManifest(
    string Format,
    int Schema,
    string Engine,
    string BatchwiseVersion,
    DateTimeOffset Created,
    string ModelName,
    string ModelSha256,
    string Precision,
    bool Tf32,
    bool CudaGraph,
    int[] BatchProfiles,
    string[] ShapeProfiles,
    SortedDictionary<string, string> Environment,
    string? Calibration = null,
    string? CalibrationMethod = null,
    string? Int8Activations = null);

/// <summary>
/// A saved engine on disk (<c>.bwengine</c>): a zip holding manifest.json, the model's structure (model.onnx: its graph,
/// its integer and small constants; float weights larger than <see cref="MaxCarriedFloats"/> values are declared by
/// type and shape only, their device-ready form being among the engine's artefacts) and the engine's own artefacts
/// (compiled kernels, library choices, processed weights) as named entries. Anything that runs a model on the engine
/// that built it takes one. The model and artefacts named *.bin are stored uncompressed (weights do not compress, and
/// they must read fast); the rest are compressed.
/// </summary>
public static class SavedEngineFile
{
    /// <summary>The file extension.</summary>
    public const string Extension = ".bwengine";

    /// <summary>The manifest's format name.</summary>
    public const string FormatName = "batchwise-engine";

    /// <summary>
    /// The current layout (2: the cuda engine's processed weights, cuda/constants.json and .bin, added; 3: model.onnx
    /// without the float weights those hold).
    /// </summary>
    public const int CurrentSchema = 3;

    /// <summary>Float initializers of at most this many values stay in a saved engine's model (a plan may read small constants on the host).</summary>
    public const int MaxCarriedFloats = 1024;

    /// <summary>The doc string of an initializer whose values a saved engine left out (its device-ready form is saved).</summary>
    public const string LeftOutMarker = "batchwise: values left out of the saved engine's model; its device-ready form is among the engine's artefacts";

    /// <summary>True for an initializer a saved engine declared by type and shape only.</summary>
    public static bool IsLeftOut(global::Onnx.TensorProto initializer)
    {
        ArgumentNullException.ThrowIfNull(initializer);
        return initializer.DocString == LeftOutMarker;
    }

    /// <summary>
    /// The bytes of <paramref name="model"/>'s structure for a saved engine: every float initializer of more than
    /// <see cref="MaxCarriedFloats"/> values declared by type and shape only (marked with <see cref="LeftOutMarker"/>);
    /// the rest as it is. <paramref name="leftOut"/> counts the values left out.
    /// </summary>
    public static byte[] StructureOf(OnnxModel model, out long leftOut)
    {
        ArgumentNullException.ThrowIfNull(model);
        var proto = model.Proto.Clone();
        leftOut = 0;
        foreach (var t in proto.Graph.Initializer)
        {
            var type = (ElementType)t.DataType;
            var count = Tensor.ElementCountOf(t.Dims);
            if (!Enum.IsDefined(type) || !type.IsFloatingPoint() || count <= MaxCarriedFloats || !HostTensor.HasValues(t))
            {
                continue;
            }

            t.RawData = Google.Protobuf.ByteString.Empty;
            t.FloatData.Clear();
            t.DoubleData.Clear();
            t.Int32Data.Clear();
            t.DocString = LeftOutMarker;
            leftOut += count;
        }

        return proto.ToByteArray();
    }

    /// <summary>The command that rebuilds a saved engine as <paramref name="manifest"/> describes it.</summary>
    public static string RebuildCommand(SavedEngineManifest manifest, string path)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return $"batchwise build <model.onnx> --engine {manifest.Engine} --precision {manifest.Precision}{(manifest.Calibration is { } data ? $" --calibration {data} --calibration-method {manifest.CalibrationMethod}{(manifest.Int8Activations is "symmetric" ? " --int8-activations symmetric" : string.Empty)}" : string.Empty)}{((manifest.BatchProfiles?.Length ?? 0) > 0 ? " --batch-profile " + string.Join(',', manifest.BatchProfiles!) : string.Empty)}{string.Concat((manifest.ShapeProfiles ?? []).Select(p => " --shape-profile " + p))} -o {path}";
    }

    /// <summary>True for a path that names a saved engine.</summary>
    public static bool IsSavedEngine(string path) => path.EndsWith(Extension, StringComparison.OrdinalIgnoreCase);

    /// <summary>SHA-256 of model bytes, as the manifest records it.</summary>
    public static string Hash(byte[] model) => Convert.ToHexStringLower(SHA256.HashData(model));

    /// <summary>Writes a saved engine (atomically: a temporary file renamed into place).</summary>
    public static void Write(string path, SavedEngineManifest manifest, byte[] model, IReadOnlyDictionary<string, byte[]> artefacts)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(artefacts);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
        {
            throw new BatchwiseException($"Cannot write '{path}': folder '{dir}' does not exist", "Create the folder first or choose another path.");
        }

        var temp = full + ".tmp";
        using (var zip = ZipFile.Open(temp, ZipArchiveMode.Create))
        {
            Add(zip, "manifest.json", JsonSerializer.SerializeToUtf8Bytes(manifest, SavedEngineJson.Default.SavedEngineManifest), CompressionLevel.Optimal);
            Add(zip, "model.onnx", model, CompressionLevel.NoCompression);
            foreach (var (name, bytes) in artefacts.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                Add(zip, name, bytes, name.EndsWith(".bin", StringComparison.Ordinal) ? CompressionLevel.NoCompression : CompressionLevel.Fastest);
            }
        }

        File.Move(temp, full, overwrite: true);
    }

    /// <summary>Reads the manifest and the model of a saved engine; the model remembers where it came from.</summary>
    public static (SavedEngineManifest Manifest, OnnxModel Model) ReadModel(string path)
    {
        var spans = new StartupSpans();
        var (manifest, model) = spans.Measure("read_file", () =>
        {
            using var zip = Open(path);
            return (ReadManifest(zip, path), Entry(zip, "model.onnx", path));
        });
        if (spans.Measure("read_hash", () => Hash(model)) != manifest.ModelSha256)
        {
            throw new BatchwiseException($"'{path}' is damaged: its model does not match the hash in its manifest", "Build the engine again with `batchwise build`.");
        }

        var onnx = spans.Measure("read_parse", () => OnnxModel.FromBytes(model, manifest.ModelName, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)), path));
        onnx.SavedEngine = path;
        onnx.WeightsLeftOut = onnx.Graph.Initializer.Any(IsLeftOut);
        onnx.ReadSpans = spans.Snapshot();
        return (manifest, onnx);
    }

    /// <summary>The manifest alone (what a saved engine was built with and for), checked as every read checks it.</summary>
    public static SavedEngineManifest ReadManifest(string path)
    {
        using var zip = Open(path);
        return ReadManifest(zip, path);
    }

    /// <summary>The manifest and every entry under <paramref name="prefix"/> (an engine's own artefacts).</summary>
    public static (SavedEngineManifest Manifest, IReadOnlyDictionary<string, byte[]> Entries) ReadArtefacts(string path, string prefix)
    {
        using var zip = Open(path);
        var manifest = ReadManifest(zip, path);
        var entries = zip.Entries.Where(e => e.FullName.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(e => e.FullName, e => Entry(zip, e.FullName, path), StringComparer.Ordinal);
        return (manifest, entries);
    }

    private static ZipArchive Open(string path)
    {
        try
        {
            return ZipFile.OpenRead(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new BatchwiseException($"Cannot read saved engine '{path}': {e.Message}", "Pass a file written by `batchwise build`, or the .onnx model itself.", e);
        }
    }

    private static SavedEngineManifest ReadManifest(ZipArchive zip, string path)
    {
        SavedEngineManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(Entry(zip, "manifest.json", path), SavedEngineJson.Default.SavedEngineManifest);
        }
        catch (JsonException e)
        {
            throw new BatchwiseException($"'{path}' has an unreadable manifest: {e.Message}", "Build the engine again with `batchwise build`.", e);
        }

        if (manifest is null || manifest.Format != FormatName)
        {
            throw new BatchwiseException($"'{path}' is not a Batchwise saved engine", "Pass a file written by `batchwise build`, or the .onnx model itself.");
        }

        if (manifest.Schema != CurrentSchema)
        {
            throw new BatchwiseException($"'{path}' has layout version {manifest.Schema}; this Batchwise reads version {CurrentSchema}", $"Rebuild it with this Batchwise: {RebuildCommand(manifest, path)}");
        }

        return manifest;
    }

    /// <summary>An entry's bytes, read once into their array; a damaged entry (bad data, wrong checksum, cut short) is refused in one line.</summary>
    private static byte[] Entry(ZipArchive zip, string name, string path)
    {
        const string Hint = "Build the engine again with `batchwise build`.";
        var entry = zip.GetEntry(name) ?? throw new BatchwiseException($"'{path}' is damaged: it has no {name}", Hint);
        try
        {
            using var stream = entry.Open();
            var bytes = new byte[checked((int)entry.Length)];
            stream.ReadExactly(bytes);
            if (stream.ReadByte() >= 0)
            {
                throw new InvalidDataException("more bytes than its header says");
            }

            return bytes;
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException or OverflowException)
        {
            throw new BatchwiseException($"'{path}' is damaged: its entry {name} cannot be read ({e.Message})", Hint, e);
        }
    }

    private static void Add(ZipArchive zip, string name, byte[] bytes, CompressionLevel level)
    {
        using var stream = zip.CreateEntry(name, level).Open();
        stream.Write(bytes);
    }
}

/// <summary>A weight whose values a saved engine left out of its model was read on the host (a plan needed its values).</summary>
public sealed class WeightsLeftOutException(string message, string hint) : BatchwiseException(message, hint);

/// <summary>Source-generated JSON for saved engines (snake_case).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(SavedEngineManifest))]
[JsonSerializable(typeof(Dictionary<string, string[]>))]
[JsonSerializable(typeof(Dictionary<string, string>))]
public sealed partial class SavedEngineJson : JsonSerializerContext
{
}
