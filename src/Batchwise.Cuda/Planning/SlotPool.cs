namespace Batchwise.Cuda.Planning;

/// <summary>
/// Which execution slot (stream, arena, handles) a run goes on, when a session lets <see cref="Depth"/> staged runs share
/// one slot's stream (<see cref="Engines.EngineOptions.PipelineDepth"/>): a whole idle slot first; else, for a staged
/// run, a free lane (companion) of the busy slot with the fewest runs on it; else none, and the caller makes a new slot
/// and adds it. A run that needs the slot to itself (a prepared run: it times or synchronises the whole stream) takes
/// only an idle slot, and no lane joins it. Depth 1 is a pool of whole slots. Thread-safe.
/// </summary>
/// <typeparam name="TSlot">The slot (a plain object in tests).</typeparam>
internal sealed class SlotPool<TSlot>
    where TSlot : class
{
    private readonly List<Entry> _entries = [];
    private readonly Stack<Entry> _idle = new();
    private readonly Lock _gate = new();

    /// <summary>A pool of slots with <paramref name="depth"/> lanes each (1..).</summary>
    public SlotPool(int depth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        Depth = depth;
    }

    /// <summary>Runs one slot's stream may carry at once.</summary>
    public int Depth { get; }

    /// <summary>Every slot added, idle or not.</summary>
    public IReadOnlyList<TSlot> All
    {
        get
        {
            lock (_gate)
            {
                return [.. _entries.Select(e => e.Slot)];
            }
        }
    }

    /// <summary>Takes an idle slot for a run that needs it alone; false when none is idle.</summary>
    public bool TryTakeWhole(out TSlot slot)
    {
        lock (_gate)
        {
            if (!_idle.TryPop(out var entry))
            {
                slot = null!;
                return false;
            }

            entry.Whole = true;
            slot = entry.Slot;
            return true;
        }
    }

    /// <summary>
    /// Takes a lane for a staged run: lane 0 of an idle slot, else the lowest free lane of the shared slot with the fewest
    /// lanes held (below <see cref="Depth"/>); false when there is none.
    /// </summary>
    public bool TryTakeLane(out TSlot slot, out int lane)
    {
        lock (_gate)
        {
            if (!_idle.TryPop(out var entry))
            {
                entry = null;
                foreach (var e in _entries)
                {
                    if (!e.Whole && e.HeldCount > 0 && e.HeldCount < Depth && (entry is null || e.HeldCount < entry.HeldCount))
                    {
                        entry = e;
                    }
                }

                if (entry is null)
                {
                    slot = null!;
                    lane = -1;
                    return false;
                }
            }

            lane = Array.IndexOf(entry.Held, false);
            entry.Held[lane] = true;
            entry.HeldCount++;
            slot = entry.Slot;
            return true;
        }
    }

    /// <summary>Adds a new slot, held as <paramref name="whole"/> says (true: alone; false: its lane 0).</summary>
    public void AddHeld(TSlot slot, bool whole)
    {
        lock (_gate)
        {
            var entry = new Entry(slot, Depth) { Whole = whole };
            if (!whole)
            {
                entry.Held[0] = true;
                entry.HeldCount = 1;
            }

            _entries.Add(entry);
        }
    }

    /// <summary>Adds a new slot, idle.</summary>
    public void AddIdle(TSlot slot)
    {
        lock (_gate)
        {
            var entry = new Entry(slot, Depth);
            _entries.Add(entry);
            _idle.Push(entry);
        }
    }

    /// <summary>Gives back a slot taken whole.</summary>
    public void ReturnWhole(TSlot slot)
    {
        lock (_gate)
        {
            var entry = Find(slot);
            if (!entry.Whole)
            {
                throw new InvalidOperationException("The slot was not taken whole");
            }

            entry.Whole = false;
            _idle.Push(entry);
        }
    }

    /// <summary>Gives back lane <paramref name="lane"/> of <paramref name="slot"/>; the slot is idle once no lane is held.</summary>
    public void ReturnLane(TSlot slot, int lane)
    {
        lock (_gate)
        {
            var entry = Find(slot);
            if (lane < 0 || lane >= Depth || !entry.Held[lane])
            {
                throw new InvalidOperationException($"Lane {lane} of the slot is not held");
            }

            entry.Held[lane] = false;
            if (--entry.HeldCount == 0)
            {
                _idle.Push(entry);
            }
        }
    }

    /// <summary>Lanes of <paramref name="slot"/> held now (a slot taken whole counts as <see cref="Depth"/>).</summary>
    public int Held(TSlot slot)
    {
        lock (_gate)
        {
            var entry = Find(slot);
            return entry.Whole ? Depth : entry.HeldCount;
        }
    }

    private Entry Find(TSlot slot) => _entries.Find(e => ReferenceEquals(e.Slot, slot)) ?? throw new InvalidOperationException("The slot is not in this pool");

    private sealed class Entry(TSlot slot, int depth)
    {
        public TSlot Slot { get; } = slot;

        public bool[] Held { get; } = new bool[depth];

        public int HeldCount { get; set; }

        public bool Whole { get; set; }
    }
}
