using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Batchwise.Analysis;

/// <summary>
/// What one device can do, measured through one engine: the numbers a roofline prediction needs.
/// A CPU fills it from engine micro-benchmarks (<see cref="CeilingsProbe"/>); a GPU engine fills the same
/// fields from its own probes (cuBLASLt GEMM, device-to-device copies, empty-kernel launches).
/// </summary>
public sealed record DeviceCeilings
{
    /// <summary>Version of this record's JSON layout; a cache file of another version is measured anew.</summary>
    public const int CurrentSchema = 2;

    /// <summary>JSON layout version.</summary>
    public int Schema { get; init; } = CurrentSchema;

    /// <summary>Engine name (ort, cuda).</summary>
    public required string Engine { get; init; }

    /// <summary>Device name (CPU model or GPU name).</summary>
    public required string Device { get; init; }

    /// <summary>Host name of the machine measured.</summary>
    public required string Machine { get; init; }

    /// <summary>Peak fp32 GEMM rate, FLOP/s (2 FLOPs per multiply-add).</summary>
    public required double PeakFlops { get; init; }

    /// <summary>Best fp32 convolution rate through the engine, FLOP/s, where measured (engines whose convolutions do not reach the GEMM rate); null: use <see cref="PeakFlops"/>.</summary>
    public double? PeakConvFlops { get; init; }

    /// <summary>Peak fp16 GEMM rate, FLOP/s, where measured (GPU tensor cores); null where not.</summary>
    public double? PeakFlopsFp16 { get; init; }

    /// <summary>Sustained memory bandwidth, bytes/s (read + write).</summary>
    public required double BandwidthBytesPerSecond { get; init; }

    /// <summary>Fixed cost of one run of a model (session entry, input binding, output allocation), seconds.</summary>
    public required double RunOverheadSeconds { get; init; }

    /// <summary>Cost of each extra operator or kernel in a run (dispatch on a CPU, launch on a GPU), seconds.</summary>
    public required double OpOverheadSeconds { get; init; }

    /// <summary>
    /// GEMM N (the batch-scaled dimension: batch x out-H x out-W for a convolution) at which GEMMs reach the
    /// peak rate; below it the effective peak scales as N / SaturationN.
    /// </summary>
    public required double SaturationN { get; init; }

    /// <summary>Where <see cref="SaturationN"/> came from (measured curve or derived from the hardware).</summary>
    public string SaturationSource { get; init; } = "derived";

    /// <summary>Parallel units the device has (CPU cores, GPU SMs).</summary>
    public int ComputeUnits { get; init; }

    /// <summary>When the ceilings were measured (UTC).</summary>
    public DateTimeOffset MeasuredAt { get; init; }

    /// <summary>Seconds the measurement took.</summary>
    public double CalibrationSeconds { get; init; }

    /// <summary>Anything else worth recording (engine version, threads, individual samples).</summary>
    public IReadOnlyDictionary<string, string> Details { get; init; } = new Dictionary<string, string>();

    /// <summary>Arithmetic intensity (FLOP/byte) at which compute and bandwidth ceilings meet: the roofline's ridge point.</summary>
    [JsonIgnore]
    public double RidgeIntensity => PeakFlops / BandwidthBytesPerSecond;

    /// <summary>Effective GEMM rate at a given N: peak x min(1, N / SaturationN).</summary>
    public double EffectiveFlops(double n) => n <= 0 ? PeakFlops : PeakFlops * Math.Min(1.0, n / SaturationN);

    /// <summary>Peak rate for an operator: the convolution rate for Conv where measured, else the GEMM rate.</summary>
    public double PeakFor(string opType) => opType is "Conv" or "ConvTranspose" && PeakConvFlops is > 0 ? PeakConvFlops.Value : PeakFlops;

    /// <summary>One line for tables and logs.</summary>
    public string Summary() => string.Create(
        CultureInfo.InvariantCulture,
        $"{Device} via {Engine}: {PeakFlops / 1e9:N1} GFLOP/s fp32 GEMM{(PeakConvFlops is { } conv ? $", {conv / 1e9:N1} conv" : "")}, {BandwidthBytesPerSecond / 1e9:N1} GB/s memory, {RunOverheadSeconds * 1e6:N1} µs per run + {OpOverheadSeconds * 1e6:N2} µs per op, GEMM saturates at N ≈ {SaturationN:N0}");
}

/// <summary>Per-machine cache of measured <see cref="DeviceCeilings"/>: one JSON file per machine, engine and device.</summary>
public sealed class CeilingsCache
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>A cache rooted at <paramref name="directory"/>.</summary>
    public CeilingsCache(string directory) => Directory = directory;

    /// <summary>The folder holding the cache files.</summary>
    public string Directory { get; }

    /// <summary>The user's default cache: $BATCHWISE_CACHE_DIR, else $XDG_CACHE_HOME/batchwise, else ~/.cache/batchwise.</summary>
    public static CeilingsCache Default()
    {
        var explicitDir = Environment.GetEnvironmentVariable("BATCHWISE_CACHE_DIR");
        if (!string.IsNullOrWhiteSpace(explicitDir))
        {
            return new CeilingsCache(Path.Combine(explicitDir, "ceilings"));
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrWhiteSpace(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return new CeilingsCache(Path.Combine(root, "batchwise", "ceilings"));
    }

    /// <summary>The file that holds the ceilings for one machine, engine and device (and the settings that change them).</summary>
    public string PathFor(string machine, string engine, string device, string settings = "")
    {
        var key = $"{machine}|{engine}|{device}|{settings}";
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))[..12];
        return Path.Combine(Directory, $"{Sanitize(machine)}-{Sanitize(engine)}-{hash}.json");
    }

    /// <summary>Reads cached ceilings, or null when absent, unreadable or of another schema.</summary>
    public DeviceCeilings? TryRead(string path)
    {
        try
        {
            if (!File.Exists(path))
            {
                return null;
            }

            var c = JsonSerializer.Deserialize<DeviceCeilings>(File.ReadAllText(path), Json);
            return c is { Schema: DeviceCeilings.CurrentSchema, PeakFlops: > 0, BandwidthBytesPerSecond: > 0, SaturationN: > 0 } ? c : null;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            // A damaged cache is re-measured, not an error.
            return null;
        }
    }

    /// <summary>Writes ceilings atomically (temp file then rename).</summary>
    public void Write(string path, DeviceCeilings ceilings)
    {
        try
        {
            System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            var temp = path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllText(temp, JsonSerializer.Serialize(ceilings, Json));
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot write the device-ceilings cache '{path}': {e.Message}", "Set BATCHWISE_CACHE_DIR or XDG_CACHE_HOME to a writable folder.", e);
        }
    }

    private static string Sanitize(string s)
    {
        var chars = s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray();
        var text = new string(chars);
        return text.Length > 40 ? text[..40] : text;
    }
}
