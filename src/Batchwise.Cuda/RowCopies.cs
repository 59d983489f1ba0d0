using Batchwise.Cuda.Kernels;

namespace Batchwise.Cuda;

/// <summary>
/// Rows of a staged run's buffer copied from where they are (a device or a page-locked host pointer) rather than from
/// staging (inputs), or to there (outputs); a piece with neither pointer is a gap, which goes through staging.
/// </summary>
internal readonly record struct DirectRows(long Offset, long Bytes, IntPtr HostPointer, ulong DevicePointer)
{
    /// <summary>True for rows in device memory (CUDA shared memory).</summary>
    public bool OnDevice => DevicePointer != 0;

    /// <summary>True for a gap between rows read or written in place: the caller's rows in the staging buffer.</summary>
    public bool IsGap => DevicePointer == 0 && HostPointer == 0;
}

/// <summary>
/// How a staged run moves one buffer's rows: the pieces in offset order (in-place rows and the gaps between them), and
/// whether the device rows go through one segment-copy launch (<see cref="KernelSource.CopySegments"/>) rather than one
/// copy operation each (BATCHWISE_GATHER=kernel|copies).
/// </summary>
internal static class RowCopies
{
    /// <summary>
    /// BATCHWISE_GATHER: kernel (the default) copies a buffer's device rows in one launch (H200, 64 rows of 602,112 bytes:
    /// 32 us enqueued and finished against 255 us for 64 copies); copies keeps one copy operation a row.
    /// </summary>
    public static bool KernelFromEnvironment => GatherByKernel(Environment.GetEnvironmentVariable("BATCHWISE_GATHER"));

    /// <summary>A BATCHWISE_GATHER value: true for kernel (or unset), false for copies; anything else is refused.</summary>
    public static bool GatherByKernel(string? setting) => setting?.Trim().ToLowerInvariant() switch
    {
        null or "" or "kernel" => true,
        "copies" => false,
        var other => throw new BatchwiseException($"BATCHWISE_GATHER '{other}' is not kernel or copies", "Unset it (one launch copies a batch's rows in device memory), or set BATCHWISE_GATHER=copies for one copy a row."),
    };

    /// <summary>
    /// BATCHWISE_HOST_ROW_BYTES: the smallest row in page-locked host memory (a registered system shared memory region) a
    /// staged run copies in place, one copy operation for the row (default 32768; 0: every row). A smaller row goes through
    /// the staging buffer, which moves the batch's rows in one copy operation and costs the host a memcpy of the row: a
    /// classifier's 4 KB output rows are 64 copy operations of a few microseconds each, or one and 64 memcpys of ~0.3 us.
    /// </summary>
    public static long HostRowBytesFromEnvironment => HostRowBytes(Environment.GetEnvironmentVariable("BATCHWISE_HOST_ROW_BYTES"));

    /// <summary>The default smallest in-place host row.</summary>
    public const long DefaultHostRowBytes = 32768;

    /// <summary>A BATCHWISE_HOST_ROW_BYTES value: a byte count from 0 (unset: <see cref="DefaultHostRowBytes"/>); anything else is refused.</summary>
    public static long HostRowBytes(string? setting) =>
        string.IsNullOrWhiteSpace(setting) ? DefaultHostRowBytes
        : long.TryParse(setting.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var bytes) ? bytes
        : throw new BatchwiseException($"BATCHWISE_HOST_ROW_BYTES '{setting}' is not a byte count", $"Unset it (rows under {DefaultHostRowBytes} bytes go through the staging buffer), or give a count of bytes; 0 copies every row in place.");

    /// <summary>
    /// Sorts <paramref name="rows"/> by offset and writes into <paramref name="pieces"/> (cleared first) the rows and the
    /// gaps before, between and after them in a buffer of <paramref name="total"/> bytes. Overlapping rows are kept as
    /// given (copied in order, the later overwriting), with no gap where they overlap.
    /// </summary>
    public static void Pieces(List<DirectRows> rows, long total, List<DirectRows> pieces)
    {
        rows.Sort(static (a, b) => a.Offset.CompareTo(b.Offset));
        pieces.Clear();
        long at = 0;
        foreach (var r in rows)
        {
            if (r.Offset > at)
            {
                pieces.Add(new DirectRows(at, r.Offset - at, 0, 0));
            }

            pieces.Add(r);
            at = Math.Max(at, r.Offset + r.Bytes);
        }

        if (total > at)
        {
            pieces.Add(new DirectRows(at, total - at, 0, 0));
        }
    }

    /// <summary>
    /// Whether the device rows among <paramref name="pieces"/> (in offset order) go through the segment copy: at least two
    /// of them, and no two rows overlapping (copies in order decide which row wins an overlap; one launch would race).
    /// </summary>
    public static bool ByKernel(List<DirectRows> pieces)
    {
        var device = 0;
        long end = 0;
        foreach (var p in pieces)
        {
            if (p.Offset < end)
            {
                return false;
            }

            end = p.Offset + p.Bytes;
            device += p.OnDevice && p.Bytes > 0 ? 1 : 0;
        }

        return device >= 2;
    }

    /// <summary>The device rows among <paramref name="pieces"/> with a positive size: the table entries they take.</summary>
    public static int DeviceRows(List<DirectRows> pieces)
    {
        var n = 0;
        foreach (var p in pieces)
        {
            n += p.OnDevice && p.Bytes > 0 ? 1 : 0;
        }

        return n;
    }

    /// <summary>Blocks of <see cref="KernelSource.CopySegments"/> one segment of <paramref name="bytes"/> takes.</summary>
    public static long BlocksOf(long bytes) => Math.Max(1, (bytes + KernelSource.SegmentBlockBytes - 1) / KernelSource.SegmentBlockBytes);

    /// <summary>
    /// Writes a segment at entry <paramref name="count"/> of <paramref name="table"/> (source, destination, bytes, first
    /// block) and advances the entry count and the blocks so far; a segment of no bytes takes no entry.
    /// </summary>
    public static void Add(Span<ulong> table, ref int count, ref long blocks, ulong source, ulong destination, long bytes)
    {
        if (bytes <= 0)
        {
            return;
        }

        var e = table.Slice(count * KernelSource.SegmentEntryWords, KernelSource.SegmentEntryWords);
        e[0] = source;
        e[1] = destination;
        e[2] = (ulong)bytes;
        e[3] = (ulong)blocks;
        count++;
        blocks += BlocksOf(bytes);
    }
}
