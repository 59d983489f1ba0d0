namespace Batchwise.Batching;

/// <summary>
/// The batcher loop's queue (owned by that one loop; not thread-safe): requests in arrival order per priority level,
/// the same requests per shape key with running row totals, and a heap of deadlines. Adding, removing and expiring a
/// request cost O(log n); finding the head costs O(priority levels); selecting a batch touches only the head's shape
/// key, and within it stops once the batch is full (Triton's scheduler keeps a cursor and totals the same way).
/// </summary>
internal sealed class PendingRequests
{
    private readonly LinkedList<DynamicBatcher.QueuedRequest>[] _arrival;
    private readonly Dictionary<string, ShapeQueue> _byKey = new(StringComparer.Ordinal);
    private readonly PriorityQueue<DynamicBatcher.QueuedRequest, long> _deadlines = new();

    public PendingRequests(int priorityLevels)
    {
        _arrival = Enumerable.Range(0, priorityLevels).Select(_ => new LinkedList<DynamicBatcher.QueuedRequest>()).ToArray();
    }

    /// <summary>Requests in the queue.</summary>
    public int Count { get; private set; }

    /// <summary>Takes a request in: O(log n) (the deadline heap), O(1) without a deadline.</summary>
    public void Add(DynamicBatcher.QueuedRequest request)
    {
        var level = request.Priority - 1;
        request.InArrivalOrder = _arrival[level].AddLast(request);
        if (!_byKey.TryGetValue(request.Key, out var shape))
        {
            shape = new ShapeQueue(_arrival.Length);
            _byKey.Add(request.Key, shape);
        }

        request.InShapeQueue = shape.Levels[level].AddLast(request);
        shape.Rows += request.Rows;
        Count++;
        if (request.Deadline != long.MaxValue)
        {
            _deadlines.Enqueue(request, request.Deadline);
        }
    }

    /// <summary>Takes a request out (sent, timed out or cancelled): O(1); a second call does nothing.</summary>
    public void Remove(DynamicBatcher.QueuedRequest request)
    {
        if (request.InArrivalOrder is not { } arrival)
        {
            return;
        }

        arrival.List!.Remove(arrival);
        var shape = _byKey[request.Key];
        shape.Levels[request.Priority - 1].Remove(request.InShapeQueue!);
        shape.Rows -= request.Rows;
        if (shape.Rows == 0)
        {
            _byKey.Remove(request.Key);
        }

        request.InArrivalOrder = null;
        request.InShapeQueue = null;
        Count--;

        // Its deadline stays in the heap until it comes up; NextDeadline skips it then (lazy deletion).
    }

    /// <summary>The oldest request of the highest priority level, or null.</summary>
    public DynamicBatcher.QueuedRequest? Head()
    {
        foreach (var level in _arrival)
        {
            if (level.First is { } first)
            {
                return first.Value;
            }
        }

        return null;
    }

    /// <summary>Rows queued under a shape key (the running total): O(1).</summary>
    public int RowsOf(string key) => _byKey.TryGetValue(key, out var shape) ? shape.Rows : 0;

    /// <summary>When the oldest request of a shape key was queued (long.MaxValue if none): O(priority levels).</summary>
    public long OldestOf(string key)
    {
        var oldest = long.MaxValue;
        if (_byKey.TryGetValue(key, out var shape))
        {
            foreach (var level in shape.Levels)
            {
                if (level.First is { } first)
                {
                    oldest = Math.Min(oldest, first.Value.Enqueued);
                }
            }
        }

        return oldest;
    }

    /// <summary>
    /// Requests of one shape key, highest priority first and oldest first within a level, taken while they fit in
    /// <paramref name="limit"/> rows (one that does not fit is passed over, as a smaller later one may); the scan
    /// stops as soon as the rows reach the limit, so it never walks further than one batch plus the requests passed over.
    /// </summary>
    public List<DynamicBatcher.QueuedRequest> Select(string key, int limit, out int rows, out long oldestEnqueued)
    {
        var selected = new List<DynamicBatcher.QueuedRequest>();
        rows = 0;
        oldestEnqueued = long.MaxValue;
        if (!_byKey.TryGetValue(key, out var shape))
        {
            return selected;
        }

        foreach (var level in shape.Levels)
        {
            for (var node = level.First; node is not null && rows < limit; node = node.Next)
            {
                var r = node.Value;
                if (rows + r.Rows <= limit)
                {
                    selected.Add(r);
                    rows += r.Rows;
                    oldestEnqueued = Math.Min(oldestEnqueued, r.Enqueued);
                }
            }
        }

        return selected;
    }

    /// <summary>The earliest deadline of a request still queued (long.MaxValue if none), dropping stale heap entries on the way.</summary>
    public long NextDeadline(out DynamicBatcher.QueuedRequest? request)
    {
        while (_deadlines.TryPeek(out var r, out var deadline))
        {
            if (r.InArrivalOrder is not null && r.IsQueued)
            {
                request = r;
                return deadline;
            }

            _deadlines.Dequeue();
        }

        request = null;
        return long.MaxValue;
    }

    /// <summary>Removes the earliest deadline from the heap (after <see cref="NextDeadline"/> returned it).</summary>
    public void PopDeadline() => _deadlines.Dequeue();

    /// <summary>Every queued request (for failing them all when the loop breaks).</summary>
    public IEnumerable<DynamicBatcher.QueuedRequest> All() => _arrival.SelectMany(level => level);

    /// <summary>The requests of one shape key: one arrival-ordered list per priority level, and their rows in all.</summary>
    private sealed class ShapeQueue(int levels)
    {
        public LinkedList<DynamicBatcher.QueuedRequest>[] Levels { get; } = Enumerable.Range(0, levels).Select(_ => new LinkedList<DynamicBatcher.QueuedRequest>()).ToArray();

        public int Rows { get; set; }
    }
}
