using System.Globalization;
using System.Reflection;
using System.Text.Json;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda;

/// <summary>
/// The cuda engine's part of a saved engine (<see cref="SavedEngineFile"/>): compiled kernels (CUBINs and the kernels
/// each holds), the library choices of every plan it built and the processed weights as the device stores them, valid only for the device, driver, cuDNN, cuBLASLt,
/// NVRTC and Batchwise versions it was built with. A new process loads them instead of compiling and asking heuristics.
/// </summary>
internal sealed class SavedEngine
{
    private const string Prefix = "cuda/";

    private SavedEngine(SavedEngineManifest manifest, IReadOnlyDictionary<string, byte[]> kernels, IReadOnlyDictionary<string, string[]> contents, IReadOnlyDictionary<string, byte[]> choices, SavedConstants? constants)
    {
        Manifest = manifest;
        Kernels = kernels;
        KernelContents = contents;
        Choices = choices;
        Constants = constants;
    }

    public SavedEngineManifest Manifest { get; }

    /// <summary>CUBIN images by file name.</summary>
    public IReadOnlyDictionary<string, byte[]> Kernels { get; }

    /// <summary>The kernel names each CUBIN holds.</summary>
    public IReadOnlyDictionary<string, string[]> KernelContents { get; }

    /// <summary>Library choices by problem.</summary>
    public IReadOnlyDictionary<string, byte[]> Choices { get; }

    /// <summary>The processed, device-ready weights (BN folded, reordered, converted) and the form of every derived constant; null in a file without them.</summary>
    public SavedConstants? Constants { get; }

    /// <summary>Batchwise's version, as saved engines record it.</summary>
    public static string BatchwiseVersion =>
        typeof(SavedEngine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(SavedEngine).Assembly.GetName().Version?.ToString() ?? "0";

    /// <summary>What a saved engine must have been built with to run on this device.</summary>
    public static SortedDictionary<string, string> EnvironmentOf(CudaDeviceInfo device) => new(StringComparer.Ordinal)
    {
        ["device"] = device.Name,
        ["compute_capability"] = device.ComputeCapability,
        ["driver"] = device.DriverVersion,
        ["cudnn"] = device.CudnnVersion,
        ["cublaslt"] = device.CublasLtVersion,
        ["nvrtc"] = device.NvrtcVersion,
        ["batchwise"] = BatchwiseVersion,
    };

    /// <summary>
    /// Reads a saved engine for this device, refusing in one line (naming what differs and how to rebuild) a file built
    /// elsewhere or with other library versions, or options that contradict the file.
    /// </summary>
    public static SavedEngine Read(string path, EngineOptions options, StartupSpans? spans = null)
    {
        spans ??= new StartupSpans();
        var (manifest, entries) = spans.Measure("load_saved_read", () => SavedEngineFile.ReadArtefacts(path, Prefix));
        spans.Measure("load_saved_check", () => Check(path, manifest, options));
        var parsing = System.Diagnostics.Stopwatch.GetTimestamp();
        var contents = entries.TryGetValue(Prefix + "kernels.json", out var c)
            ? JsonSerializer.Deserialize(c, SavedEngineJson.Default.DictionaryStringStringArray) ?? []
            : [];
        var kernels = entries.Where(e => e.Key.StartsWith(Prefix + "kernels/", StringComparison.Ordinal))
            .ToDictionary(e => e.Key[(Prefix.Length + "kernels/".Length)..], e => e.Value, StringComparer.Ordinal);
        var choiceText = entries.TryGetValue(Prefix + "choices.json", out var ch)
            ? JsonSerializer.Deserialize(ch, SavedEngineJson.Default.DictionaryStringString) ?? []
            : [];
        var choices = choiceText.ToDictionary(p => p.Key, p => Convert.FromBase64String(p.Value), StringComparer.Ordinal);
        spans.Add("load_saved_parse", System.Diagnostics.Stopwatch.GetElapsedTime(parsing).TotalSeconds);
        var constants = SavedConstants.Read(path, entries.GetValueOrDefault(Prefix + SavedConstants.IndexEntry), entries.GetValueOrDefault(Prefix + SavedConstants.BlobEntry), spans);
        return new SavedEngine(manifest, kernels, contents, choices, constants);
    }

    /// <summary>The options a saved engine runs with (<see cref="Apply(EngineOptions)"/>), from its manifest alone (its artefacts are read by <see cref="Read"/>, once, when it is loaded).</summary>
    public static EngineOptions Effective(string path, EngineOptions options)
    {
        var manifest = SavedEngineFile.ReadManifest(path);
        Check(path, manifest, options);
        return Apply(manifest, options);
    }

    /// <summary>Refuses, in one line, a file for another engine or environment, or options that contradict it.</summary>
    private static void Check(string path, SavedEngineManifest manifest, EngineOptions options)
    {
        if (manifest.Engine != "cuda")
        {
            throw new BatchwiseException($"'{path}' is a saved {manifest.Engine} engine, not a cuda one", $"Run it with --engine {manifest.Engine}.");
        }

        var device = CudaDevices.List().ElementAtOrDefault(options.DeviceId)
            ?? throw new BatchwiseException($"GPU {options.DeviceId} does not exist", "Run `batchwise devices` to list the GPUs.");
        var here = EnvironmentOf(device);
        var differ = here.Where(p => !manifest.Environment.TryGetValue(p.Key, out var v) || v != p.Value)
            .Select(p => $"{p.Key} {(manifest.Environment.TryGetValue(p.Key, out var v) ? v : "(none)")} there, {p.Value} here")
            .ToList();
        if (differ.Count > 0)
        {
            throw new BatchwiseException(
                $"'{path}' was built for another environment ({string.Join("; ", differ)}): its compiled kernels and choices do not apply here",
                $"Rebuild it on this machine: {SavedEngineFile.RebuildCommand(manifest, path)}");
        }

        var precision = PrecisionOf(manifest);
        if (options.Precision != Precision.Fp32 && options.Precision != precision)
        {
            throw new BatchwiseException($"'{path}' was built for {manifest.Precision}; --precision {options.Precision.ToString().ToLowerInvariant()} contradicts it", $"Drop --precision (a saved engine runs as it was built), or rebuild with --precision {options.Precision.ToString().ToLowerInvariant()}.");
        }

        // An int8 engine carries the model quantized at build: never calibrated again, least of all on other data.
        if (precision == Precision.Int8 && options.Calibration != Transforms.Int8Calibration.Default && options.Calibration != CalibrationOf(manifest))
        {
            var built = CalibrationOf(manifest);
            throw new BatchwiseException($"'{path}' was quantized at build on {built.Data} ({built.Method.ToString().ToLowerInvariant()}, {built.Scheme} activations); --calibration {options.Calibration.Data} --calibration-method {options.Calibration.Method.ToString().ToLowerInvariant()} --int8-activations {options.Calibration.Scheme} contradicts it", $"Drop --calibration and --int8-activations (a saved engine keeps its scales), or rebuild: {SavedEngineFile.RebuildCommand(manifest with { Calibration = options.Calibration.Data, CalibrationMethod = options.Calibration.Method.ToString().ToLowerInvariant(), Int8Activations = options.Calibration.Scheme }, path)}");
        }

        if (options.BatchProfiles.Count > 0 && !options.BatchProfiles.Order().SequenceEqual(manifest.BatchProfiles.Order()))
        {
            throw new BatchwiseException($"'{path}' was built with batch profiles {string.Join(',', manifest.BatchProfiles)}; --batch-profile {string.Join(',', options.BatchProfiles)} contradicts it", "Drop --batch-profile, or rebuild with the profiles you want.");
        }

        if (options.ShapeProfiles.Count > 0 && !options.ShapeProfiles.Select(p => p.Text).Order(StringComparer.Ordinal).SequenceEqual(manifest.ShapeProfiles.Order(StringComparer.Ordinal)))
        {
            throw new BatchwiseException($"'{path}' was built with shape profiles {string.Join(' ', manifest.ShapeProfiles)}; --shape-profile {string.Join(' ', options.ShapeProfiles.Select(p => p.Text))} contradicts it", "Drop --shape-profile, or rebuild with the profiles you want.");
        }
    }

    /// <summary>The options a saved engine runs with: its precision, TF32, CUDA-graph setting and batch profiles.</summary>
    public EngineOptions Apply(EngineOptions options) => Apply(Manifest, options);

    private static Precision PrecisionOf(SavedEngineManifest manifest) => manifest.Precision switch
    {
        "fp16" => Precision.Fp16,
        "int8" => Precision.Int8,
        _ => Precision.Fp32,
    };

    private static Transforms.Int8Calibration CalibrationOf(SavedEngineManifest manifest) => manifest.Calibration is { } data
        ? new(data, Transforms.Int8Calibration.ParseMethod(manifest.CalibrationMethod ?? "minmax"), Transforms.Int8Calibration.ParseSymmetric(manifest.Int8Activations ?? "asymmetric"))
        : Transforms.Int8Calibration.Default;

    private static EngineOptions Apply(SavedEngineManifest manifest, EngineOptions options) => options with
    {
        Precision = PrecisionOf(manifest),
        Calibration = CalibrationOf(manifest),
        AllowTf32 = manifest.Tf32,
        BatchProfiles = manifest.BatchProfiles,
        ShapeProfiles = [.. manifest.ShapeProfiles.Select(ShapeProfile.Parse)],
    };

    /// <summary>
    /// Writes what <paramref name="session"/> compiled and chose, with its model, to <paramref name="path"/>: the model's
    /// structure only (its large float weights left out, their device-ready form saved) unless <paramref name="keepWeights"/>.
    /// </summary>
    public static void Write(string path, OnnxModel model, EngineOptions options, CudaSession session, bool keepWeights = false)
    {
        var device = CudaDevices.List().ElementAtOrDefault(options.DeviceId)
            ?? throw new BatchwiseException($"GPU {options.DeviceId} does not exist", "Run `batchwise devices` to list the GPUs.");
        var bytes = keepWeights ? model.ToBytes() : SavedEngineFile.StructureOf(model, out _);
        var manifest = new SavedEngineManifest(
            SavedEngineFile.FormatName,
            SavedEngineFile.CurrentSchema,
            "cuda",
            BatchwiseVersion,
            DateTimeOffset.UtcNow,
            model.Name,
            SavedEngineFile.Hash(bytes),
            options.Precision.ToString().ToLowerInvariant(),
            options.AllowTf32,
            options.UseCudaGraph,
            [.. session.BatchProfiles],
            [.. session.ShapeProfiles.Values.Select(p => p.Text)],
            EnvironmentOf(device),
            options.Precision == Precision.Int8 ? options.Calibration.Data : null,
            options.Precision == Precision.Int8 ? options.Calibration.Method.ToString().ToLowerInvariant() : null,
            options.Precision == Precision.Int8 ? options.Calibration.Scheme : null);
        var artefacts = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (file, image) in session.Kernels.Images)
        {
            artefacts[Prefix + "kernels/" + file] = image;
        }

        artefacts[Prefix + "kernels.json"] = JsonSerializer.SerializeToUtf8Bytes(session.Kernels.Contents.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal), SavedEngineJson.Default.DictionaryStringStringArray);
        artefacts[Prefix + "choices.json"] = JsonSerializer.SerializeToUtf8Bytes(session.Choices.Snapshot().ToDictionary(p => p.Key, p => Convert.ToBase64String(p.Value), StringComparer.Ordinal), SavedEngineJson.Default.DictionaryStringString);
        var (index, blob) = session.SaveConstants();
        artefacts[Prefix + SavedConstants.IndexEntry] = index;
        artefacts[Prefix + SavedConstants.BlobEntry] = blob;
        SavedEngineFile.Write(path, manifest, bytes, artefacts);
    }

    /// <summary>A line for logs: what the file holds.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"{KernelContents.Values.Sum(v => v.Length)} kernels, {Choices.Count} library choices, {(Constants is { } c ? $"{c.UploadCount} device-ready constants ({c.BlobBytes / 1e6:F1} MB)" : "no processed weights")}, built {Manifest.Created:yyyy-MM-dd HH:mm} UTC");
}
