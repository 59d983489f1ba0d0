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
}
