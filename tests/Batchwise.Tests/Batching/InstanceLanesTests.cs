using Batchwise.Batching;

namespace Batchwise.Tests.Batching;

public sealed class InstanceLanesTests
{
    [Fact]
    public void Depth_1_hands_out_each_idle_instance_once_and_the_last_freed_first()
    {
        var lanes = new InstanceLanes(3, 1);
        Assert.True(lanes.TryTake(out var a));
        Assert.True(lanes.TryTake(out var b));
        Assert.True(lanes.TryTake(out var c));
        Assert.Equal([0, 1, 2], new[] { a, b, c });
        Assert.False(lanes.TryTake(out _));

        lanes.Return(1);
        lanes.Return(2);
        Assert.True(lanes.TryTake(out var next));
        Assert.Equal(2, next);
    }

    [Fact]
    public void Idle_instances_are_taken_before_second_lanes_and_no_instance_goes_past_the_depth()
    {
        var lanes = new InstanceLanes(2, 2);
        var taken = new List<int>();
        while (lanes.TryTake(out var i))
        {
            taken.Add(i);
        }

        Assert.Equal([0, 1, 0, 1], taken);
        Assert.Equal(2, lanes.InFlight(0));
        Assert.Equal(2, lanes.InFlight(1));

        // One lane of instance 1 frees: it is the only one with room.
        lanes.Return(1);
        Assert.True(lanes.TryTake(out var again));
        Assert.Equal(1, again);
        Assert.False(lanes.TryTake(out _));
    }

    [Fact]
    public void A_second_lane_goes_to_the_least_busy_instance()
    {
        var lanes = new InstanceLanes(3, 3);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(lanes.TryTake(out _));
        }

        Assert.True(lanes.TryTake(out var second0));
        Assert.Equal(0, second0);
        Assert.True(lanes.TryTake(out var second1));
        Assert.Equal(1, second1);

        // Instance 2 now has the fewest in flight (1): its second lane comes before a third anywhere.
        Assert.True(lanes.TryTake(out var next));
        Assert.Equal(2, next);
    }

    [Fact]
    public void Returning_a_lane_that_was_not_taken_is_refused()
    {
        var lanes = new InstanceLanes(1, 2);
        Assert.Throws<InvalidOperationException>(() => lanes.Return(0));
    }
}
