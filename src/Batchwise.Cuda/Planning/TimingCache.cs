using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Batchwise.Cuda.Planning;

/// <summary>What identifies one convolution for algorithm choice: shapes, parameters, precision and the workspace limit.</summary>
/// <param name="Precision">Data type and math allowed, e.g. fp32 or fp32+tf32.</param>
/// <param name="X">Input shape (NCHW, 1-d lifted to 2-d).</param>
/// <param name="W">Filter shape.</param>
/// <param name="Y">Output shape.</param>
/// <param name="Pads">Symmetric pads per spatial axis.</param>
/// <param name="Strides">Strides per spatial axis.</param>
/// <param name="Dilations">Dilations per spatial axis.</param>
/// <param name="Groups">Group count.</param>
/// <param name="WorkspaceLimit">Largest workspace an algorithm may use, in bytes.</param>
internal sealed record ConvShapeKey(string Precision, long[] X, long[] W, long[] Y, int[] Pads, int[] Strides, int[] Dilations, int Groups, long WorkspaceLimit)
{
    /// <summary>The key as stored in the cache file.</summary>
    public string Text => string.Create(CultureInfo.InvariantCulture,
        $"{Precision}|x={Join(X)}|w={Join(W)}|y={Join(Y)}|pad={Join(Pads)}|stride={Join(Strides)}|dil={Join(Dilations)}|g={Groups}|ws={WorkspaceLimit}");

    private static string Join<T>(IEnumerable<T> values) => string.Join('x', values);

    /// <summary>The key <see cref="Text"/> wrote, or null for text of another form.</summary>
    public static ConvShapeKey? Parse(string text)
    {
        var parts = text.Split('|');
        if (parts.Length != 9 || parts[0].Length == 0)
        {
            return null;
        }

        string? Field(int i, string name) => parts[i].StartsWith(name + "=", StringComparison.Ordinal) ? parts[i][(name.Length + 1)..] : null;
        long[]? Longs(string? v) => v is null ? null : v.Split('x').Select(s => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : (long?)null).ToArray() is var a && a.All(n => n is not null) ? [.. a.Select(n => n!.Value)] : null;
        int[]? Ints(string? v) => Longs(v) is { } l && l.All(n => n is >= int.MinValue and <= int.MaxValue) ? [.. l.Select(n => (int)n)] : null;
        var (x, w, y) = (Longs(Field(1, "x")), Longs(Field(2, "w")), Longs(Field(3, "y")));
        var (pads, strides, dilations) = (Ints(Field(4, "pad")), Ints(Field(5, "stride")), Ints(Field(6, "dil")));
        var groups = Ints(Field(7, "g"));
        var limit = Longs(Field(8, "ws"));
        if (x is null || w is null || y is null || pads is null || strides is null || dilations is null || groups is not [var g] || limit is not [var ws])
        {
            return null;
        }

        return new ConvShapeKey(parts[0], x, w, y, pads, strides, dilations, g, ws);
    }
}

/// <summary>The algorithm chosen for one convolution and what it measured.</summary>
/// <param name="Algo">cudnnConvolutionFwdAlgo_t.</param>
/// <param name="MathType">cudnnMathType_t it was timed with.</param>
/// <param name="WorkspaceBytes">Workspace it needs.</param>
/// <param name="Milliseconds">Its time when measured.</param>
internal sealed record TacticChoice(int Algo, int MathType, long WorkspaceBytes, double Milliseconds)
{
    /// <summary>True when <see cref="WorkspaceBytes"/> was asked of cuDNN for this exact shape (no need to ask again).</summary>
    public bool WorkspaceKnown { get; init; }
}

/// <summary>
/// Timed cuDNN convolution algorithms (and cuBLASLt matmul candidates, by heuristic rank), kept on disk per device (name, compute capability, cuDNN version) like a TensorRT
/// timing cache, so that a later plan of the same shapes skips the timing. A missing, damaged or foreign file counts as
/// empty and is rewritten on the next save.
/// </summary>
internal sealed class TimingCache
{
    private const int Schema = 1;
    private readonly Dictionary<string, TacticChoice> _entries = new(StringComparer.Ordinal);
    private readonly object _gate = new();
    private bool _dirty;

    public TimingCache(string path, string device, int computeCapability, string cudnnVersion)
    {
        Path = path;
        Device = device;
        ComputeCapability = computeCapability;
        CudnnVersion = cudnnVersion;
        Load();
    }

    /// <summary>The cache file.</summary>
    public string Path { get; }

    public string Device { get; }

    public int ComputeCapability { get; }

    public string CudnnVersion { get; }

    /// <summary>Entries read from disk or added since.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Lookups answered from the cache and algorithms timed, since this object was made.</summary>
    public int Hits { get; private set; }

    public int Misses { get; private set; }

    /// <summary>The cache of one device under a cache directory (its own file per device name, compute capability and cuDNN version).</summary>
    public static TimingCache ForDevice(string directory, string device, int computeCapability, string cudnnVersion)
    {
        var name = $"tactics-{Sanitize(device)}-sm{computeCapability}-cudnn{Sanitize(cudnnVersion)}.json";
        return new TimingCache(System.IO.Path.Combine(directory, "cuda", name), device, computeCapability, cudnnVersion);
    }

    public bool TryGet(ConvShapeKey key, out TacticChoice choice) => TryGet(key.Text, out choice);

    /// <summary>Any timed tactic by its key text (a cuBLASLt matmul: "matmul|..." with the candidate's heuristic rank as Algo).</summary>
    public bool TryGet(string key, out TacticChoice choice)
    {
        lock (_gate)
        {
            var found = _entries.TryGetValue(key, out choice!);
            if (found)
            {
                Hits++;
            }
            else
            {
                Misses++;
            }

            return found;
        }
    }

    /// <summary>The keys of every entry, a copy (an int8 graph problem looks for its own stored choice at other batch sizes).</summary>
    public IReadOnlyList<string> Keys()
    {
        lock (_gate)
        {
            return [.. _entries.Keys];
        }
    }

    public void Set(ConvShapeKey key, TacticChoice choice) => Set(key.Text, choice);

    public void Set(string key, TacticChoice choice)
    {
        lock (_gate)
        {
            _entries[key] = choice;
            _dirty = true;
        }
    }

    /// <summary>Writes the file when something changed (atomically: a temporary file renamed over it). A cache that cannot be written is skipped.</summary>
    public void Save()
    {
        lock (_gate)
        {
            if (!_dirty)
            {
                return;
            }

            try
            {
                Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
                var temp = $"{Path}.{Environment.ProcessId}.tmp";
                using (var stream = File.Create(temp))
                using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
                {
                    w.WriteStartObject();
                    w.WriteNumber("schema", Schema);
                    w.WriteString("device", Device);
                    w.WriteNumber("computeCapability", ComputeCapability);
                    w.WriteString("cudnn", CudnnVersion);
                    w.WriteStartObject("convolutions");
                    foreach (var (key, c) in _entries.OrderBy(e => e.Key, StringComparer.Ordinal))
                    {
                        w.WriteStartObject(key);
                        w.WriteNumber("algo", c.Algo);
                        w.WriteNumber("mathType", c.MathType);
                        w.WriteNumber("workspaceBytes", c.WorkspaceBytes);
                        if (double.IsFinite(c.Milliseconds))
                        {
                            w.WriteNumber("ms", Math.Round(c.Milliseconds, 6));
                        }
                        else
                        {
                            w.WriteNull("ms"); // kept untimed (one candidate) or none ran: JSON has no NaN or infinity
                        }

                        w.WriteEndObject();
                    }

                    w.WriteEndObject();
                    w.WriteEndObject();
                }

                File.Move(temp, Path, overwrite: true);
                _dirty = false;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A read-only or full disk costs the next run its timing, nothing else.
            }
        }
    }

    private void Load()
    {
        if (!File.Exists(Path))
        {
            return;
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path));
            var root = doc.RootElement;
            if (root.GetProperty("schema").GetInt32() != Schema || root.GetProperty("device").GetString() != Device
                || root.GetProperty("computeCapability").GetInt32() != ComputeCapability || root.GetProperty("cudnn").GetString() != CudnnVersion)
            {
                _dirty = true;
                return;
            }

            foreach (var p in root.GetProperty("convolutions").EnumerateObject())
            {
                var v = p.Value;
                _entries[p.Name] = new TacticChoice(v.GetProperty("algo").GetInt32(), v.GetProperty("mathType").GetInt32(), v.GetProperty("workspaceBytes").GetInt64(), v.GetProperty("ms") is { ValueKind: JsonValueKind.Null } ? double.NaN : v.GetProperty("ms").GetDouble());
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException or IOException or UnauthorizedAccessException)
        {
            // Damaged: start empty and rewrite it.
            _entries.Clear();
            _dirty = true;
        }
    }

    private static string Sanitize(string text)
    {
        var b = new StringBuilder(text.Length);
        foreach (var ch in text.Trim())
        {
            b.Append(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '-' ? ch : '_');
        }

        return b.ToString();
    }
}
