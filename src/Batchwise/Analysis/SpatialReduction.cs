namespace Batchwise.Analysis;

/// <summary>
/// A reduction over the spatial axes of an image tensor [N, C, H, W] (a squeeze-excite block's ReduceMean), as the cuda
/// engine runs it in half precision: channels-last, so a column reduction of [outer = N, reduced = H x W, inner = C]
/// (Kernels/KernelSource.Reductions.cs). A 256-thread block takes one image, 32 lanes of two channels each and one range
/// of the reduced axis, its 8 rows of lanes striding over the range (4 loads in flight a thread); where few blocks would
/// cover a long axis (small batches) the axis is split into ranges of at least 64 rows until about 1,024 blocks run, each
/// writing a float partial, and a second kernel finishes with a warp per output (lanes over every 32nd partial). Its time
/// is not its bytes: at b=4 EfficientNet-B0's 16 means move 10-50 kB each and took 10-18 µs each layer by layer (session
/// 22 call 6), where one memory-bound pass was predicted at a few µs.
/// </summary>
/// <param name="Reduced">Elements reduced per output (H x W).</param>
/// <param name="Inner">Outputs per sample (the channels).</param>
public sealed record SpatialReduction(long Reduced, long Inner)
{
    /// <summary>Rows of lanes in a block, each striding over the block's range (the engine's ReduceColumnRows).</summary>
    private const int Rows = 8;

    /// <summary>Loads a thread keeps in flight (the engine's loops are unrolled 4 times).</summary>
    private const int InFlight = 4;

    /// <summary>How many ranges the reduced axis is split into at <paramref name="batchSize"/> (the engine's ReduceColumnSplits, two halves a lane).</summary>
    public long Splits(int batchSize)
    {
        var vector = Inner % 2 == 0 ? 2 : 1;
        var blocks = batchSize * (((Inner / vector) + 31) / 32);
        return Math.Max(1, Math.Min((1024 + blocks - 1) / blocks, Reduced / 64));
    }

    /// <summary>
    /// The dependent memory round trips at <paramref name="batchSize"/>: a thread's loads over its range, 4 in flight, then
    /// (split) the finishing warp's loads over the partials, 4 in flight; a kernel is at least one.
    /// </summary>
    public int LatencyRounds(int batchSize)
    {
        static long Ceil(long a, long b) => (a + b - 1) / b;
        var splits = Splits(batchSize);
        var loads = Ceil(Ceil(Reduced, splits), Rows);
        var rounds = Math.Max(1, Ceil(loads, InFlight));
        if (splits > 1)
        {
            rounds += Math.Max(1, Ceil(Ceil(splits, 32), InFlight));
        }

        return (int)Math.Min(int.MaxValue, rounds);
    }
}
