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
    // _seen[step, lane]: the latest step of that lane ordered before or at the step (-1 for none).
    private readonly int[,] _seen;

    private StepLanes(int[] lane, int[] waitFor, bool[] signals, long sideWorkspaceBytes)
    {
        Lane = lane;
        WaitFor = waitFor;
        Signals = signals;
        SideWorkspaceBytes = sideWorkspaceBytes;
        _seen = Seen(lane, waitFor);
    }

    /// <summary>Each step's lane: 0 (the slot's stream) or 1 (its side stream).</summary>
    public int[] Lane { get; }

    /// <summary>The step of the other lane each step waits for first (its latest dependency there), or -1.</summary>
    public int[] WaitFor { get; }

    /// <summary>True for a step after which an event is recorded (a step of the other lane waits for it).</summary>
    public bool[] Signals { get; }

    /// <summary>The largest workspace a step of lane 1 asks for: the side lane's own, as its steps run beside the main lane's.</summary>
    public long SideWorkspaceBytes { get; }

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

    /// <summary>The arena buffers a step uses, each once (constants are never written, so they order nothing).</summary>
    private static int[] ArenaBuffers(PlanStep step, IReadOnlyList<PlanBuffer> buffers) =>
        step.Buffers.Where(b => b >= 0 && buffers[b].IsArena).Distinct().ToArray();

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
        long sideWorkspace = 0;
        for (var i = 0; i < n; i++)
        {
            var step = steps[i];
            var arena = ArenaBuffers(step, buffers);
            var writes = Writes(step).Where(arena.Contains).ToHashSet();
            var deps = new HashSet<int>();
            foreach (var b in arena)
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

            if (l == 1)
            {
                sideWorkspace = Math.Max(sideWorkspace, step switch
                {
                    ConvStep c => c.WorkspaceBytes,
                    MatmulStep m => m.WorkspaceBytes,
                    _ => 0,
                });
            }

            last[l] = i;
            foreach (var b in arena)
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

        return last[1] < 0 ? null : new StepLanes(lane, waitFor, signals, sideWorkspace);
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

            foreach (var b in ArenaBuffers(steps[i], buffers))
            {
                buffers[b].FirstStep = Math.Min(buffers[b].FirstStep, lo[i]);
                buffers[b].LastStep = Math.Max(buffers[b].LastStep, hi[i]);
            }
        }
    }

    /// <summary>
    /// For each step, the first and last index of the steps that may run beside it (<see cref="MayRunTogether"/>); lo
    /// &gt; hi where there are none. They are a run of the other lane's steps: the earlier ones after the latest that is
    /// ordered before the step, then the later ones whose latest predecessor on the step's lane comes before it (that
    /// predecessor never moves back along a lane, so a binary search finds where the run ends). Part of every plan build.
    /// </summary>
    internal (int[] Lo, int[] Hi) ConcurrentRanges()
    {
        var n = Lane.Length;
        var byLane = new[] { new List<int>(), new List<int>() };
        for (var i = 0; i < n; i++)
        {
            byLane[Lane[i]].Add(i);
        }

        var lo = new int[n];
        var hi = new int[n];
        for (var i = 0; i < n; i++)
        {
            var (own, other) = (Lane[i], 1 - Lane[i]);
            var steps = byLane[other];
            var first = FirstAbove(steps, k => k, _seen[i, other]);
            var end = FirstAbove(steps, k => _seen[k, own], i - 1);
            (lo[i], hi[i]) = first < end ? (steps[first], steps[end - 1]) : (int.MaxValue, -1);
        }

        return (lo, hi);
    }

    /// <summary>The first position in <paramref name="steps"/> whose key is above <paramref name="bound"/> (keys nondecreasing along it), or its count.</summary>
    private static int FirstAbove(List<int> steps, Func<int, int> key, int bound)
    {
        var (a, b) = (0, steps.Count);
        while (a < b)
        {
            var m = (a + b) / 2;
            if (key(steps[m]) <= bound)
            {
                a = m + 1;
            }
            else
            {
                b = m;
            }
        }

        return a;
    }

    /// <summary>True when neither step is ordered before the other, by its lane or a wait: they may run at the same time.</summary>
    internal bool MayRunTogether(int a, int b)
    {
        if (a == b || Lane[a] == Lane[b])
        {
            return false;
        }

        var (first, second) = a < b ? (a, b) : (b, a);
        return first > _seen[second, Lane[first]];
    }

    /// <summary>Each step's latest predecessor (or itself) on each lane, through its lane's order and its waits.</summary>
    private static int[,] Seen(int[] lane, int[] waitFor)
    {
        var n = lane.Length;
        var seen = new int[n, 2];
        var previous = new[] { -1, -1 };
        for (var i = 0; i < n; i++)
        {
            var l = lane[i];
            for (var k = 0; k < 2; k++)
            {
                var before = previous[l] >= 0 ? seen[previous[l], k] : -1;
                seen[i, k] = k == l ? i : Math.Max(before, waitFor[i] >= 0 ? seen[waitFor[i], k] : -1);
            }

            previous[l] = i;
        }

        return seen;
    }
}
