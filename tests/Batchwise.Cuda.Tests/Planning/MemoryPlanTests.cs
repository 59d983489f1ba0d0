using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class MemoryPlanTests
{
    [Fact]
    public void Buffers_live_at_the_same_time_never_overlap()
    {
        var rng = new Random(3);
        var buffers = Enumerable.Range(0, 200).Select(_ =>
        {
            var first = rng.Next(0, 100);
            return new BufferLifetime(rng.Next(1, 100_000), first, first + rng.Next(0, 10));
        }).ToList();

        var plan = MemoryPlan.Build(buffers);

        for (var i = 0; i < buffers.Count; i++)
        {
            Assert.Equal(0, plan.Offsets[i] % MemoryPlan.Alignment);
            Assert.True(plan.Offsets[i] + buffers[i].Bytes <= plan.ArenaBytes);
            for (var j = i + 1; j < buffers.Count; j++)
            {
                if (buffers[i].Overlaps(buffers[j]))
                {
                    var apart = plan.Offsets[i] + buffers[i].Bytes <= plan.Offsets[j] || plan.Offsets[j] + buffers[j].Bytes <= plan.Offsets[i];
                    Assert.True(apart, $"buffers {i} and {j} overlap in memory and in time");
                }
            }
        }

        Assert.True(plan.ArenaBytes < plan.UnsharedBytes / 2, $"arena {plan.ArenaBytes} vs unshared {plan.UnsharedBytes}: little reuse");
    }

    [Fact]
    public void A_chain_needs_only_two_buffers()
    {
        // x0 -> x1 -> x2 -> ... : step i reads buffer i and writes buffer i+1.
        var buffers = Enumerable.Range(0, 10).Select(i => new BufferLifetime(1024, Math.Max(0, i - 1), i)).ToList();

        var plan = MemoryPlan.Build(buffers);

        Assert.Equal(2 * 1024, plan.ArenaBytes);
    }

    [Fact]
    public void A_freed_gap_is_reused_by_a_smaller_later_buffer()
    {
        var plan = MemoryPlan.Build([new(4096, 0, 1), new(4096, 0, 5), new(1024, 3, 4)]);

        Assert.Equal(8192, plan.ArenaBytes);
    }

    /// <summary>
    /// The placement walks the placed buffers in order of offset instead of sorting the conflicting ones per buffer: the
    /// offsets are those of the plain best fit (greedy by size, each buffer in the smallest gap that fits) on random plans.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Offsets_are_those_of_the_plain_best_fit(int seed)
    {
        var rng = new Random(seed);
        var buffers = Enumerable.Range(0, 300).Select(_ =>
        {
            var first = rng.Next(0, 400);
            return new BufferLifetime(rng.Next(4) == 0 ? 4096 : rng.Next(1, 1 << 20), first, first + rng.Next(0, 40));
        }).ToList();

        var plan = MemoryPlan.Build(buffers);
        Assert.Equal(PlainBestFit(buffers), plan.Offsets);
    }

    /// <summary>The best fit as first written: for each buffer (largest first), the conflicting placed ones sorted by offset.</summary>
    private static long[] PlainBestFit(IReadOnlyList<BufferLifetime> buffers)
    {
        var offsets = new long[buffers.Count];
        var placed = new List<int>();
        foreach (var i in Enumerable.Range(0, buffers.Count).OrderByDescending(i => buffers[i].Bytes).ThenBy(i => buffers[i].FirstStep))
        {
            var size = MemoryPlan.Align(buffers[i].Bytes);
            long best = -1, bestGap = long.MaxValue, cursor = 0;
            foreach (var p in placed.Where(p => buffers[p].Overlaps(buffers[i])).OrderBy(p => offsets[p]))
            {
                var gap = offsets[p] - cursor;
                if (gap >= size && gap < bestGap)
                {
                    (best, bestGap) = (cursor, gap);
                }

                cursor = Math.Max(cursor, offsets[p] + MemoryPlan.Align(buffers[p].Bytes));
            }

            offsets[i] = best >= 0 ? best : cursor;
            placed.Add(i);
        }

        return offsets;
    }
}
