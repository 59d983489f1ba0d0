namespace Batchwise.Cuda.Planning;

/// <summary>
/// Independent branches of a plan on two streams: a library step (cuDNN convolution or cuBLASLt product) that does not
/// need the step just before it goes to a second lane and runs beside it, joined by events where a later step needs
/// its result (captured into the CUDA graph as dependency edges, so the graph is a DAG instead of a chain). At small
/// batches one layer leaves most of the GPU idle: a ResNet's downsample convolution runs beside the block's first
/// convolutions, a transformer's K and V projections beside Q. Dependencies come from the buffers each step reads and
/// writes; the memory plan then keeps every buffer of a step apart from those of every step it may run beside
/// (<see cref="ExtendLifetimes"/>), so arena reuse never races.
/// </summary>
internal sealed class StepLanes
{
    private readonly Lazy<(int L0, int L1)[]> _clock;

    private StepLanes(int[] lane, int[] waitFor, bool[] signals, int lastSide)
    {
        Lane = lane;
        WaitFor = waitFor;
        Signals = signals;
        LastSide = lastSide;
        _clock = new Lazy<(int L0, int L1)[]>(Clocks);
    }

    /// <summary>Each step's lane: 0 (the slot's stream) or 1 (its side stream).</summary>
    public int[] Lane { get; }

    /// <summary>The step of the other lane each step waits for first (its latest dependency there), or -1.</summary>
    public int[] WaitFor { get; }

    /// <summary>True for a step after which an event is recorded (a step of the other lane waits for it).</summary>
    public bool[] Signals { get; }

    /// <summary>The last step of lane 1 (the main lane waits for it at the end of a run).</summary>
    public int LastSide { get; }

    /// <summary>How many steps run on lane 1.</summary>
    public int SideSteps => Lane.Count(l => l == 1);

    /// <summary>BATCHWISE_BRANCHES: on (default) or off (every step on one stream, graph order as given).</summary>
    public static bool EnabledFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_BRANCHES")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "on" or "auto" => true,
        "off" => false,
        var other => throw new BatchwiseException($"BATCHWISE_BRANCHES '{other}' is not on or off", "Unset it (independent branches run on two streams) or set BATCHWISE_BRANCHES=off."),
    };

    /// <summary>The buffers a step writes: the output of a library step; every buffer of any other step (as if it wrote them all).</summary>
    internal static IEnumerable<int> Writes(PlanStep step) => step switch
    {
        ConvStep or ConvProblemStep => [step.Buffers[3]],
        MatmulStep => [step.Buffers[2]],
        _ => step.Buffers,
    };

    /// <summary>Steps that may go to the side lane: library calls whose every use of the slot goes through the context's lane.</summary>
    private static bool MayGoAside(PlanStep step) => step is ConvStep or ConvProblemStep or MatmulStep;

    /// <summary>
    /// The lanes of <paramref name="steps"/> (dependencies through the arena buffers by id, before the memory plan), or
    /// null where no step would run beside another.
    /// </summary>
    public static StepLanes? Plan(IReadOnlyList<PlanStep> steps, IReadOnlyList<PlanBuffer> buffers)
    {
        var n = steps.Count;
        var lastWriter = new Dictionary<int, int>();
        var readers = new Dictionary<int, List<int>>();
        var lane = new int[n];
        var waitFor = new int[n];
        var signals = new bool[n];
        var last = new[] { -1, -1 };
        var waited = new[] { -1, -1 }; // the latest step of the other lane each lane already waits for
        for (var i = 0; i < n; i++)
        {
            var step = steps[i];
            var writes = Writes(step).Where(b => b >= 0 && buffers[b].IsArena).ToHashSet();
            var deps = new HashSet<int>();
            foreach (var b in step.Buffers.Where(b => b >= 0 && buffers[b].IsArena))
            {
                if (lastWriter.TryGetValue(b, out var w))
                {
                    deps.Add(w); // read (or write) after write
                }

                if (writes.Contains(b) && readers.TryGetValue(b, out var rs))
                {
                    deps.UnionWith(rs); // write after read
                }
            }

            // Beside the main lane's last step when it does not need that step.
            var l = MayGoAside(step) && last[0] >= 0 && !deps.Contains(last[0]) ? 1 : 0;
            lane[i] = l;
            var other = deps.Where(d => lane[d] != l).DefaultIfEmpty(-1).Max();
            waitFor[i] = other > waited[l] ? other : -1;
            if (waitFor[i] >= 0)
            {
                signals[waitFor[i]] = true;
                waited[l] = waitFor[i];
            }

            last[l] = i;
            foreach (var b in step.Buffers.Where(b => b >= 0 && buffers[b].IsArena).Distinct())
            {
                if (writes.Contains(b))
                {
                    lastWriter[b] = i;
                    readers.Remove(b);
                }
                else
                {
                    if (!readers.TryGetValue(b, out var rs))
                    {
                        readers[b] = rs = [];
                    }

                    rs.Add(i);
                }
            }
        }

        return last[1] < 0 ? null : new StepLanes(lane, waitFor, signals, last[1]);
    }

    /// <summary>
    /// Widens each arena buffer's lifetime over every step that may run beside a step using it, so the memory plan (which
    /// shares memory between buffers whose lifetimes do not meet) never gives two concurrent steps the same bytes.
    /// </summary>
    public void ExtendLifetimes(IReadOnlyList<PlanStep> steps, IReadOnlyList<PlanBuffer> buffers)
    {
        var (lo, hi) = ConcurrentRanges();
        for (var i = 0; i < steps.Count; i++)
        {
            if (lo[i] > hi[i])
            {
                continue; // runs beside nothing
            }

            foreach (var b in steps[i].Buffers.Where(b => b >= 0 && buffers[b].IsArena))
            {
                buffers[b].FirstStep = Math.Min(buffers[b].FirstStep, lo[i]);
                buffers[b].LastStep = Math.Max(buffers[b].LastStep, hi[i]);
            }
        }
    }

    /// <summary>
    /// For each step, the first and last index of the steps that may run beside it (<see cref="MayRunTogether"/>); lo
    /// &gt; hi where there are none.
    /// </summary>
    internal (int[] Lo, int[] Hi) ConcurrentRanges()
    {
        var n = Lane.Length;
        var lo = new int[n];
        var hi = new int[n];
        for (var i = 0; i < n; i++)
        {
            (lo[i], hi[i]) = (int.MaxValue, -1);
            for (var j = 0; j < n; j++)
            {
                if (MayRunTogether(i, j))
                {
                    lo[i] = Math.Min(lo[i], j);
                    hi[i] = Math.Max(hi[i], j);
                }
            }
        }

        return (lo, hi);
    }

    /// <summary>True when neither step is ordered before the other, by its lane or a wait: they may run at the same time.</summary>
    internal bool MayRunTogether(int a, int b)
    {
        if (a == b || Lane[a] == Lane[b])
        {
            return false;
        }

        var (first, second) = a < b ? (a, b) : (b, a);
        return first > Seen(second, Lane[first]);
    }

    /// <summary>The latest step of lane <paramref name="lane"/> ordered before or at <paramref name="step"/> (-1 for none).</summary>
    private int Seen(int step, int lane) => lane == 0 ? _clock.Value[step].L0 : _clock.Value[step].L1;

    /// <summary>Each step's latest predecessor (or itself) on each lane, through its lane's order and its waits.</summary>
    private (int L0, int L1)[] Clocks()
    {
        var n = Lane.Length;
        var clock = new (int L0, int L1)[n];
        var previous = new[] { -1, -1 };
        for (var i = 0; i < n; i++)
        {
            var l = Lane[i];
            var c = previous[l] >= 0 ? clock[previous[l]] : (-1, -1);
            if (WaitFor[i] >= 0)
            {
                var w = clock[WaitFor[i]];
                c = (Math.Max(c.Item1, w.L0), Math.Max(c.Item2, w.L1));
            }

            clock[i] = l == 0 ? (i, c.Item2) : (c.Item1, i);
            previous[l] = i;
        }

        return clock;
    }
}
