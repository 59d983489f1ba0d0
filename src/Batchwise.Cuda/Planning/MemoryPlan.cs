namespace Batchwise.Cuda.Planning;

/// <summary>One buffer's need: its size and the first and last plan steps that touch it.</summary>
/// <param name="Bytes">Size in bytes.</param>
/// <param name="FirstStep">First step that writes or reads it.</param>
/// <param name="LastStep">Last step that reads or writes it.</param>
public readonly record struct BufferLifetime(long Bytes, int FirstStep, int LastStep)
{
    /// <summary>True when both are live at some step.</summary>
    public bool Overlaps(BufferLifetime other) => FirstStep <= other.LastStep && other.FirstStep <= LastStep;
}

/// <summary>
/// A static memory plan: every buffer gets an offset in one arena so that buffers live at the same time never overlap,
/// and buffers whose lifetimes do not meet share memory (greedy by size, best fit, as TFLite's arena planner).
/// </summary>
public sealed class MemoryPlan
{
    /// <summary>Alignment of every offset (cuDNN and cuBLASLt like 256).</summary>
    public const long Alignment = 256;

    private MemoryPlan(long[] offsets, long arenaBytes, long totalBytes)
    {
        Offsets = offsets;
        ArenaBytes = arenaBytes;
        UnsharedBytes = totalBytes;
    }

    /// <summary>Offset of each buffer, in the order given.</summary>
    public IReadOnlyList<long> Offsets { get; }

    /// <summary>Arena size.</summary>
    public long ArenaBytes { get; }

    /// <summary>What the buffers would take without sharing (to report the saving).</summary>
    public long UnsharedBytes { get; }

    /// <summary>Plans offsets for the buffers.</summary>
    public static MemoryPlan Build(IReadOnlyList<BufferLifetime> buffers)
    {
        ArgumentNullException.ThrowIfNull(buffers);
        var offsets = new long[buffers.Count];
        var order = Enumerable.Range(0, buffers.Count).OrderByDescending(i => buffers[i].Bytes).ThenBy(i => buffers[i].FirstStep).ToArray();

        // The buffers placed so far, kept in order of offset (ties in the order placed): each new buffer walks them once,
        // looking only at those live at the same time (a plan for a new shape places hundreds of buffers; no sorting or
        // allocation per buffer).
        var placed = new List<int>(buffers.Count);
        long arena = 0;
        long total = 0;
        foreach (var i in order)
        {
            var size = Align(buffers[i].Bytes);
            total += size;

            // Gaps between the live-at-the-same-time buffers already placed, lowest first; take the smallest that fits.
            long best = -1;
            var bestGap = long.MaxValue;
            long cursor = 0;
            foreach (var p in placed)
            {
                if (!buffers[p].Overlaps(buffers[i]))
                {
                    continue;
                }

                var gap = offsets[p] - cursor;
                if (gap >= size && gap < bestGap)
                {
                    best = cursor;
                    bestGap = gap;
                }

                cursor = Math.Max(cursor, offsets[p] + Align(buffers[p].Bytes));
            }

            offsets[i] = best >= 0 ? best : cursor;
            arena = Math.Max(arena, offsets[i] + size);
            placed.Insert(UpperBound(placed, offsets, offsets[i]), i);
        }

        return new MemoryPlan(offsets, arena, total);
    }

    /// <summary>The first position in <paramref name="placed"/> (in order of offset) whose offset is above <paramref name="offset"/>.</summary>
    private static int UpperBound(List<int> placed, long[] offsets, long offset)
    {
        var (lo, hi) = (0, placed.Count);
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (offsets[placed[mid]] <= offset)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    /// <summary>A plan whose offsets were chosen elsewhere (segments of a plan split at a data-dependent node).</summary>
    internal static MemoryPlan Placed(long[] offsets, long arenaBytes, long unsharedBytes) => new(offsets, arenaBytes, unsharedBytes);

    /// <summary>Rounds up to <see cref="Alignment"/>.</summary>
    public static long Align(long bytes) => Math.Max(Alignment, (bytes + Alignment - 1) / Alignment * Alignment);
}
