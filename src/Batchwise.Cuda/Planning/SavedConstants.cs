using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>One tensor of a derived value: its element type (ONNX's number) and shape.</summary>
internal sealed record SavedForm(int Type, long[] Shape)
{
    [JsonIgnore]
    public ElementType ElementType => (ElementType)Type;

    public static SavedForm Of(HostTensor t) => new((int)t.Type, t.Shape);
}

/// <summary>A derived value's form: one tensor, or an array of them (<paramref name="Many"/>).</summary>
internal sealed record SavedDerivation(bool Many, SavedForm[] Values);

/// <summary>The device-ready bytes of one session constant (by name) stored as <paramref name="Storage"/>, at an offset of the blob.</summary>
internal sealed record SavedUpload(string Name, int Storage, long Offset, long Length);

/// <summary>
/// The index of a saved engine's constants: every derived value's form, where each uploaded constant's bytes lie, and
/// the bytes' XxHash3 (hex), which a load checks (a zip does not check stored entries' checksums on read).
/// </summary>
internal sealed record SavedConstantsIndex(Dictionary<string, SavedDerivation> Derivations, SavedUpload[] Uploads, string Checksum);

/// <summary>
/// A saved engine's processed weights (cuda/constants.json and cuda/constants.bin): the form of every value the session
/// derived from its weights (BN-folded filters, channels-last reorders, folded nodes) and the bytes of every constant
/// it uploaded, as the device stores them (float16 for fp16, KRSC filters). A session loaded with them uploads the bytes
/// and makes nothing (<see cref="SessionConstants"/>).
/// </summary>
internal sealed class SavedConstants
{
    /// <summary>The index entry's name in a saved engine.</summary>
    public const string IndexEntry = "constants.json";

    /// <summary>The bytes' entry (stored, not compressed: weights do not compress and must read fast).</summary>
    public const string BlobEntry = "constants.bin";

    private const int Alignment = 256;

    private readonly Dictionary<string, SavedDerivation> _derivations;
    private readonly Dictionary<(string, ElementType), SavedUpload> _uploads;
    private readonly byte[] _blob;
    private readonly string _path;

    private SavedConstants(string path, SavedConstantsIndex index, byte[] blob)
    {
        _path = path;
        _derivations = index.Derivations;
        _uploads = index.Uploads.ToDictionary(u => (u.Name, (ElementType)u.Storage));
        _blob = blob;
    }

    /// <summary>Derived values it holds.</summary>
    public int DerivationCount => _derivations.Count;

    /// <summary>Constants whose device bytes it holds.</summary>
    public int UploadCount => _uploads.Count;

    /// <summary>Bytes of device-ready constants it holds.</summary>
    public long BlobBytes => _blob.LongLength;

    /// <summary>The saved form of a derived value, or null.</summary>
    public SavedDerivation? Derivation(string name) => _derivations.GetValueOrDefault(name);

    /// <summary>
    /// The device bytes of constant <paramref name="name"/> stored as <paramref name="storage"/>, or null where none
    /// were saved; refuses, as a damaged file, bytes of another length than the constant needs.
    /// </summary>
    public ReadOnlyMemory<byte>? Bytes(string name, ElementType storage, long length)
    {
        if (!_uploads.TryGetValue((name, storage), out var u))
        {
            return null;
        }

        if (u.Length != length)
        {
            throw new BatchwiseException($"'{_path}' is damaged: constant '{name}' has {u.Length} bytes saved, the plan needs {length}", "Build the engine again with `batchwise build`.");
        }

        return _blob.AsMemory(checked((int)u.Offset), checked((int)u.Length));
    }

    /// <summary>
    /// Reads the constants of a saved engine from its two entries (both absent: none saved); refuses, in one line, an
    /// index that does not parse or bytes that do not match it.
    /// </summary>
    public static SavedConstants? Read(string path, byte[]? index, byte[]? blob, StartupSpans? spans = null)
    {
        if (index is null && blob is null)
        {
            return null;
        }

        const string Hint = "Build the engine again with `batchwise build`.";
        if (index is null || blob is null)
        {
            throw new BatchwiseException($"'{path}' is damaged: it has {(index is null ? "constant bytes without their index" : "a constants index without the bytes")}", Hint);
        }

        SavedConstantsIndex? parsed;
        try
        {
            parsed = JsonSerializer.Deserialize(index, SavedConstantsJson.Default.SavedConstantsIndex);
        }
        catch (JsonException e)
        {
            throw new BatchwiseException($"'{path}' is damaged: its constants index does not parse ({e.Message})", Hint, e);
        }

        if (parsed?.Derivations is null || parsed.Uploads is null)
        {
            throw new BatchwiseException($"'{path}' is damaged: its constants index is empty", Hint);
        }

        var checking = System.Diagnostics.Stopwatch.GetTimestamp();
        var checksum = Checksum(blob);
        spans?.Add("load_saved_checksum", System.Diagnostics.Stopwatch.GetElapsedTime(checking).TotalSeconds);
        if (checksum != parsed.Checksum)
        {
            throw new BatchwiseException($"'{path}' is damaged: its constant bytes ({blob.LongLength} of them) do not match their checksum (a truncated or altered file?)", Hint);
        }

        foreach (var (name, d) in parsed.Derivations)
        {
            if (d?.Values is null || d.Values.Any(v => v?.Shape is null || !Enum.IsDefined(v.ElementType) || v.Shape.Any(s => s < 0)) || (!d.Many && d.Values.Length != 1))
            {
                throw new BatchwiseException($"'{path}' is damaged: its constants index describes '{name}' wrongly", Hint);
            }
        }

        foreach (var u in parsed.Uploads)
        {
            if (u?.Name is null || !Enum.IsDefined((ElementType)u.Storage) || u.Offset < 0 || u.Length < 0 || u.Offset + u.Length > blob.LongLength)
            {
                throw new BatchwiseException($"'{path}' is damaged: its constant bytes end at {blob.LongLength}, the index places '{u?.Name}' past that (a truncated file?)", Hint);
            }

            if (parsed.Derivations.TryGetValue(BaseName(u.Name), out var d) && FormOf(d, u.Name) is { } form
                && Tensor.ElementCountOf(form.Shape) * ((ElementType)u.Storage).SizeOf() != u.Length)
            {
                throw new BatchwiseException($"'{path}' is damaged: constant '{u.Name}' has {u.Length} bytes, its shape {Tensor.ShapeText(form.Shape)} needs another count", Hint);
            }
        }

        if (parsed.Uploads.GroupBy(u => (u.Name, u.Storage)).Any(g => g.Count() > 1))
        {
            throw new BatchwiseException($"'{path}' is damaged: its constants index names a constant twice", Hint);
        }

        return new SavedConstants(path, parsed, blob);
    }

    /// <summary>The index and the bytes for a saved engine, from the derivations and each uploaded constant's device bytes.</summary>
    public static (byte[] Index, byte[] Blob) Write(IReadOnlyDictionary<string, SavedDerivation> derivations, IEnumerable<(string Name, ElementType Storage, ReadOnlyMemory<byte> Bytes)> uploads)
    {
        var list = uploads.OrderBy(u => u.Name, StringComparer.Ordinal).ThenBy(u => u.Storage).ToList();
        var records = new List<SavedUpload>(list.Count);
        long offset = 0;
        foreach (var (name, storage, bytes) in list)
        {
            records.Add(new SavedUpload(name, (int)storage, offset, bytes.Length));
            offset += (bytes.Length + Alignment - 1) / Alignment * Alignment;
        }

        var blob = new byte[offset];
        for (var i = 0; i < list.Count; i++)
        {
            list[i].Bytes.Span.CopyTo(blob.AsSpan(checked((int)records[i].Offset)));
        }

        var index = new SavedConstantsIndex(new Dictionary<string, SavedDerivation>(derivations, StringComparer.Ordinal), [.. records], Checksum(blob));
        return (JsonSerializer.SerializeToUtf8Bytes(index, SavedConstantsJson.Default.SavedConstantsIndex), blob);
    }

    private static string Checksum(byte[] blob) => System.IO.Hashing.XxHash3.HashToUInt64(blob).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>"recipe(...)" of an array element "recipe(...)#i".</summary>
    private static string BaseName(string name)
    {
        var hash = name.LastIndexOf('#');
        return hash > name.LastIndexOf(')') ? name[..hash] : name;
    }

    private static SavedForm? FormOf(SavedDerivation d, string name)
    {
        if (!d.Many)
        {
            return d.Values[0];
        }

        var hash = name.LastIndexOf('#');
        return hash > name.LastIndexOf(')') && int.TryParse(name.AsSpan(hash + 1), System.Globalization.CultureInfo.InvariantCulture, out var i) && i >= 0 && i < d.Values.Length ? d.Values[i] : null;
    }
}

/// <summary>Source-generated JSON for a saved engine's constants index (snake_case).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(SavedConstantsIndex))]
internal sealed partial class SavedConstantsJson : JsonSerializerContext
{
}
