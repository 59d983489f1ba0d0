using Batchwise.Cuda.Planning;

namespace Batchwise.Cuda.Tests.Planning;

public sealed class SlotPoolTests
{
    [Fact]
    public void Depth_1_lends_each_idle_slot_to_one_run_and_none_to_a_second()
    {
        var pool = new SlotPool<Slot>(1);
        var a = new Slot("a");
        pool.AddIdle(a);
        Assert.True(pool.TryTakeLane(out var slot, out var lane));
        Assert.Same(a, slot);
        Assert.Equal(0, lane);
        Assert.False(pool.TryTakeLane(out _, out _));
        Assert.False(pool.TryTakeWhole(out _));

        pool.ReturnLane(a, 0);
        Assert.True(pool.TryTakeWhole(out var whole));
        Assert.Same(a, whole);
    }

    [Fact]
    public void A_busy_slot_lends_a_companion_lane_up_to_the_depth_and_no_further()
    {
        var pool = new SlotPool<Slot>(2);
        var a = new Slot("a");
        pool.AddIdle(a);
        Assert.True(pool.TryTakeLane(out _, out var first));
        Assert.True(pool.TryTakeLane(out var companion, out var second));
        Assert.Same(a, companion);
        Assert.Equal([0, 1], new[] { first, second });
        Assert.Equal(2, pool.Held(a));
        Assert.False(pool.TryTakeLane(out _, out _));

        // The first run completes: its lane is free again while the companion still runs, and is lent next.
        pool.ReturnLane(a, 0);
        Assert.Equal(1, pool.Held(a));
        Assert.True(pool.TryTakeLane(out _, out var again));
        Assert.Equal(0, again);
    }

    [Fact]
    public void An_idle_slot_is_lent_before_a_companion_lane_of_a_busy_one()
    {
        var pool = new SlotPool<Slot>(2);
        var a = new Slot("a");
        var b = new Slot("b");
        pool.AddIdle(a);
        pool.AddIdle(b);
        Assert.True(pool.TryTakeLane(out var one, out var l1));
        Assert.True(pool.TryTakeLane(out var two, out var l2));
        Assert.NotSame(one, two);
        Assert.Equal([0, 0], new[] { l1, l2 });
        Assert.True(pool.TryTakeLane(out var three, out var l3));
        Assert.Equal(1, l3);
        Assert.Equal(2, pool.Held(three));
    }

    [Fact]
    public void A_slot_taken_whole_lends_no_companion_and_a_shared_slot_is_not_taken_whole()
    {
        var pool = new SlotPool<Slot>(3);
        var a = new Slot("a");
        pool.AddIdle(a);
        Assert.True(pool.TryTakeWhole(out _));
        Assert.Equal(3, pool.Held(a));
        Assert.False(pool.TryTakeLane(out _, out _));
        pool.ReturnWhole(a);

        Assert.True(pool.TryTakeLane(out _, out _));
        Assert.False(pool.TryTakeWhole(out _));
    }

    [Fact]
    public void A_new_slot_added_held_counts_its_lane_and_goes_idle_once_returned()
    {
        var pool = new SlotPool<Slot>(2);
        var a = new Slot("a");
        pool.AddHeld(a, whole: false);
        Assert.Equal(1, pool.Held(a));
        Assert.True(pool.TryTakeLane(out var companion, out var lane));
        Assert.Same(a, companion);
        Assert.Equal(1, lane);
        pool.ReturnLane(a, 1);
        pool.ReturnLane(a, 0);
        Assert.Equal(0, pool.Held(a));
        Assert.True(pool.TryTakeWhole(out var whole));
        Assert.Same(a, whole);
        Assert.Equal([a], pool.All);
    }

    [Fact]
    public void Giving_back_a_lane_not_held_is_refused()
    {
        var pool = new SlotPool<Slot>(2);
        var a = new Slot("a");
        pool.AddIdle(a);
        Assert.Throws<InvalidOperationException>(() => pool.ReturnLane(a, 1));
        Assert.Throws<InvalidOperationException>(() => pool.ReturnWhole(a));
        Assert.Throws<InvalidOperationException>(() => pool.Held(new Slot("other")));
    }

    private sealed record Slot(string Name);
}
