using Batchwise.Batching;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Tests.Batching;

public sealed class PendingRequestsTests
{
    [Fact]
    public void Running_totals_follow_every_add_and_remove_per_shape_key()
    {
        var q = new PendingRequests(1);
        var a = Request("k", rows: 3);
        var b = Request("k", rows: 2);
        var c = Request("other", rows: 5);
        q.Add(a);
        q.Add(b);
        q.Add(c);
        Assert.Equal((5, 5, 3), (q.RowsOf("k"), q.RowsOf("other"), q.Count));
        q.Remove(a);
        q.Remove(a); // twice: nothing more happens
        Assert.Equal((2, 2), (q.RowsOf("k"), q.Count));
        q.Remove(b);
        Assert.Equal(0, q.RowsOf("k"));
        Assert.Same(c, q.Head());
    }

    [Fact]
    public void Select_takes_highest_priority_then_oldest_passes_over_what_does_not_fit_and_stops_when_full()
    {
        var q = new PendingRequests(2);
        var low = Request("k", rows: 1, priority: 2, enqueued: 1);
        var big = Request("k", rows: 6, priority: 1, enqueued: 2);
        var three = Request("k", rows: 3, priority: 1, enqueued: 3);
        var two = Request("k", rows: 2, priority: 1, enqueued: 4);
        var late = Request("k", rows: 1, priority: 1, enqueued: 5);
        foreach (var r in new[] { low, big, three, two, late })
        {
            q.Add(r);
        }

        // limit 8: big (6) fits, three does not (9), two fills it to 8; the scan stops there (late and low untouched).
        var selected = q.Select("k", 8, out var rows, out var oldest);
        Assert.Equal([big, two], selected);
        Assert.Equal(8, rows);
        Assert.Equal(2, oldest);
        Assert.Same(big, q.Head());
        Assert.Equal(1, q.OldestOf("k")); // the low-priority request is older than the head
    }

    [Fact]
    public void Deadlines_come_out_earliest_first_and_removed_requests_are_skipped()
    {
        var q = new PendingRequests(1);
        var a = Request("k", deadline: 30);
        var b = Request("k", deadline: 10);
        var c = Request("k", deadline: 20);
        var none = Request("k");
        foreach (var r in new[] { a, b, c, none })
        {
            q.Add(r);
        }

        Assert.Equal(10, q.NextDeadline(out var first));
        Assert.Same(b, first);
        q.Remove(b); // sent in a batch: its heap entry is stale now
        Assert.Equal(20, q.NextDeadline(out var second));
        Assert.Same(c, second);
        q.PopDeadline();
        q.Remove(c);
        Assert.Equal(30, q.NextDeadline(out _));
        q.Remove(a);
        Assert.Equal(long.MaxValue, q.NextDeadline(out var last));
        Assert.Null(last);
        Assert.Equal(1, q.Count);
    }

    private static DynamicBatcher.QueuedRequest Request(string key, int rows = 1, int priority = 1, long enqueued = 0, long deadline = long.MaxValue) =>
        new([Tensor.Zeros(ElementType.Float, [rows, 2])], rows, key, priority, enqueued, deadline);
}
