using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The int8 convolution through cuDNN's graph API: the convolution and its requantization (per-channel scale, offset,
/// ReLU, saturation to int8) in one fused execution plan, the route that runs per-channel weight scales at int8 tensor
/// core speed (measured on an H200, cuDNN 9.14: 1.1-4.9x fp16 per ResNet-50 layer at b=256, 3.8-15x at b=1; the
/// legacy API's per-channel form, INT8_EXT_CONFIG with float sums, ran 0.03-0.16x). Tried first for every int8
/// convolution (BATCHWISE_INT8_GRAPH=off skips it); what cuDNN refuses takes the routes before it.
/// </summary>
internal sealed partial class GraphCompiler
{
    /// <summary>Every graph this compiler chose (a step owns it once emitted): disposed with the steps when planning fails.</summary>
    private readonly List<Int8ConvGraph> _int8Graphs = [];

    /// <summary>Seconds this plan's timed int8 graph searches took so far (against <see cref="Int8Layers.GraphPlanSeconds"/>).</summary>
    private double _int8SearchSeconds;

    /// <summary>Int8 graph problems of this plan that took the first configuration that runs, untimed, once the plan's search budget was spent.</summary>
    private int _int8Untimed;

    /// <summary>Disposes the graphs chosen so far (a graph's disposal is idempotent: its step may dispose it too).</summary>
    private void DisposeInt8Graphs()
    {
        foreach (var g in _int8Graphs)
        {
            g.Dispose();
        }

        _int8Graphs.Clear();
    }

    /// <summary>
    /// The graph problem of an int8 convolution whose input and output zero points are stored as
    /// <paramref name="storedXZero"/> and <paramref name="storedYZero"/> (a uint8 value is kept as the int8 byte v - 128):
    /// per-pixel offsets where padding stands for a real zero that is not stored as 0; a ReLU only where its floor is not
    /// the int8 saturation (-128), followed by the zero point where that is not 0.
    /// </summary>
    internal static Int8ConvGraphShape Int8GraphShape(long[] x, long[] w, long[] y, long[] pads, long[] strides, double storedXZero, bool relu, double storedYZero)
    {
        var graphRelu = relu && storedYZero != -128;
        return new Int8ConvGraphShape(x, w, y, [pads[0], pads[1]], [strides[0], strides[1]], storedXZero != 0 && pads.Any(p => p != 0), graphRelu, graphRelu && storedYZero != 0);
    }

    /// <summary>
    /// The graph's plan for the problem: the configuration stored for it (this session, a saved engine, the timing cache),
    /// else cuDNN's configurations (heuristics modes A, B and the fallback list: <see cref="Int8ConvGraph.Configs"/>), int32
    /// sums first, then float (<see cref="Int8Layers.GraphSumsSwitch"/>), skipping the engines
    /// <see cref="Int8Layers.GraphSkipSwitch"/> names: the fastest of the first <see cref="Int8Layers.GraphConfigs"/> that
    /// finalize and run on the real shapes (CUDA events), stored in the session's choices and the device's timing cache so
    /// that a later plan or process does not time again; with one configuration, the first that runs, untimed. A problem
    /// without a choice of its own first takes the same problem's choice at another batch size
    /// (<see cref="Int8Layers.GraphChoicesSwitch"/>, untimed trial only); once the plan's searches have spent
    /// <see cref="Int8Layers.GraphPlanSeconds"/>, the first configuration that runs, untimed and not stored. Null and
    /// the last refusal when none runs; a trial that faults the GPU (the CUDA context is then lost for the process) is a
    /// <see cref="BatchwiseException"/> naming the layer and the engine.
    /// </summary>
    private Int8ConvGraph? ChooseInt8Graph(Int8ConvGraphShape shape, out string refusal)
    {
        refusal = "cuDNN's heuristics offer no engine configuration";
        if (_target.PlansConvolutionsWithoutLibrary)
        {
            var problem = Int8ConvGraph.WithoutLibrary(shape, Int8Layers.GraphSums[0]);
            _int8Graphs.Add(problem);
            return problem;
        }

        var handle = _target.PlanningCudnn;
        var configs = Int8Layers.GraphConfigs;
        var cache = configs > 1 ? _target.Int8GraphTimings : null;
        var storeKey = Int8GraphStoreKey(configs, shape);
        var skipped = Int8Layers.SkippedEngines;
        if (StoredInt8Graph(storeKey, cache) is { } k && Int8Layers.GraphSums.Contains(k.Sums))
        {
            try
            {
                var g = TimedLibrary("int8_graph_heuristics", () => Int8ConvGraph.Describe(handle, shape, k.Sums));
                if (TimedLibrary("int8_graph_plan", () => g.TryPlan(handle, k.Index, MaxConvWorkspace)) is null && !skipped.Contains(g.EngineIndex) && !g.EngineWantsReorder)
                {
                    _target.Choices.Set(storeKey, EncodeInt8Graph(k.Sums, k.Index));
                    Int8Layers.Trace($"{_node}: stored choice {g.Engine} for {shape.Key}");
                    _int8Graphs.Add(g);
                    return g;
                }

                g.Dispose();
            }
            catch (CudaException)
            {
                // The stored choice no longer fits: search afresh below.
            }
        }

        // No choice of its own: the same problem's choice at another batch size, where the policy allows one.
        var policy = Int8Layers.GraphChoices;
        if (configs > 1 && policy != Int8GraphChoices.Exact && ReuseInt8GraphOfBatch(handle, shape, configs, cache, storeKey, policy, skipped) is { } reused)
        {
            return reused;
        }

        // A timed search while the plan's budget lasts; once spent, the first configuration that runs, untimed and not
        // stored (a later plan may still time it). A search started keeps its own limit (the plan may overrun its budget
        // by one search): a choice cut shorter would be stored in the timing cache as if searched.
        var budget = Int8Layers.GraphPlanSeconds;
        var untimed = configs > 1 && _int8SearchSeconds >= budget;
        var searchSeconds = Int8Layers.GraphSearchSeconds;
        var searchStarted = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var chosen = SearchInt8Graph(handle, shape, untimed ? null : cache, untimed ? null : storeKey, untimed ? 1 : configs, searchSeconds, skipped, ref refusal);
            if (chosen is not null && untimed)
            {
                _int8Untimed++;
                Int8Layers.Trace(Int8GraphUntimedText(_node, shape.Key, chosen.Engine, budget, _int8Untimed));
            }

            return chosen;
        }
        finally
        {
            if (configs > 1 && !untimed)
            {
                _int8SearchSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(searchStarted).TotalSeconds;
            }
        }
    }

    /// <summary>The first of the allowed sums types whose configurations <see cref="PlanInt8Graph"/> finds one that runs; null when none does.</summary>
    private Int8ConvGraph? SearchInt8Graph(CudnnHandle handle, Int8ConvGraphShape shape, TimingCache? cache, string? storeKey, int configs, double searchSeconds, IReadOnlySet<long> skipped, ref string refusal)
    {
        foreach (var sums in Int8Layers.GraphSums)
        {
            Int8ConvGraph g;
            try
            {
                g = TimedLibrary("int8_graph_heuristics", () => Int8ConvGraph.Describe(handle, shape, sums));
            }
            catch (CudaException e)
            {
                refusal = e.Message;
                continue;
            }

            try
            {
                if (PlanInt8Graph(g, handle, cache, storeKey, sums, configs, searchSeconds, skipped, ref refusal) is { } chosen)
                {
                    return chosen;
                }
            }
            catch
            {
                g.Dispose(); // a fault in the trial: the graph goes before the error leaves planning
                throw;
            }
        }

        return null;
    }

    /// <summary>
    /// The key an int8 graph problem's choice is stored under: the number of configurations timed is part of it (the
    /// first that runs and the fastest of eight are different choices), and so is the candidate list's form (modes A, B
    /// and the fallback list, each engine and knob set once: "int8graph-ab" from session 11 on).
    /// </summary>
    internal static string Int8GraphStoreKey(int configs, Int8ConvGraphShape shape) =>
        string.Create(CultureInfo.InvariantCulture, $"int8graph-ab{configs}|{shape.Key}");

    /// <summary>
    /// The stored choice of the same problem at the batch size <paramref name="policy"/> picks among those known (the
    /// session's choices, the device's timing cache), planned and run once untimed on this shape (it must finalize and
    /// run), taken without a search and stored in the session's choices for this exact problem (not in the timing cache:
    /// it was not timed here). Null when there is none, or it does not run here (the caller searches).
    /// </summary>
    private Int8ConvGraph? ReuseInt8GraphOfBatch(CudnnHandle handle, Int8ConvGraphShape shape, int configs, TimingCache? cache, string storeKey, Int8GraphChoices policy, IReadOnlySet<long> skipped)
    {
        IEnumerable<string> keys = _target.Choices.Snapshot().Keys;
        if (cache is not null)
        {
            keys = keys.Concat(cache.Keys());
        }

        if (Int8GraphNeighbourBatch(shape.X[0], Int8GraphKnownBatches(configs, shape, keys), policy) is not { } batch)
        {
            return null;
        }

        if (StoredInt8Graph(Int8GraphBatchKey(configs, shape, batch), cache) is not { } choice || !Int8Layers.GraphSums.Contains(choice.Sums))
        {
            return null;
        }

        Int8ConvGraph? g = null;
        try
        {
            g = TimedLibrary("int8_graph_heuristics", () => Int8ConvGraph.Describe(handle, shape, choice.Sums));
            var graph = g;
            var why = TimedLibrary("int8_graph_plan", () => graph.TryPlan(handle, choice.Index, MaxConvWorkspace))
                ?? (skipped.Contains(g.EngineIndex) ? $"{g.Engine} skipped ({Int8Layers.GraphSkipSwitch})" : null)
                ?? (g.EngineWantsReorder ? $"{g.Engine}: its filter must be reordered first" : null)
                ?? TimedLibrary("int8_trial", () => RunInt8Graph(handle, graph, timed: false)).Failure;
            if (why is null)
            {
                _target.Choices.Set(storeKey, EncodeInt8Graph(choice.Sums, choice.Index));
                Int8Layers.Trace(Int8GraphReuseText(_node, shape.Key, batch, g.Engine));
                _int8Graphs.Add(g);
                return g;
            }

            Int8Layers.Trace($"{_node}: choice of b={batch} does not run for {shape.Key} ({why}): searching");
            g.Dispose();
            return null;
        }
        catch (CudaException e)
        {
            Int8Layers.Trace($"{_node}: choice of b={batch} does not run for {shape.Key} ({e.Message}): searching");
            g?.Dispose();
            return null;
        }
        catch
        {
            g?.Dispose(); // a fault in the trial: the graph goes before the error leaves planning
            throw;
        }
    }

    /// <summary>The store key of the same problem at batch size <paramref name="batch"/>: the batch of x and y replaced, nothing else.</summary>
    internal static string Int8GraphBatchKey(int configs, Int8ConvGraphShape shape, long batch) =>
        Int8GraphStoreKey(configs, shape with { X = [batch, .. shape.X[1..]], Y = [batch, .. shape.Y[1..]] });

    /// <summary>
    /// The batch sizes other than the problem's own among <paramref name="keys"/> that store the same problem
    /// (<see cref="Int8GraphBatchKey"/>: only the batch differs; same number of configurations timed).
    /// </summary>
    internal static SortedSet<long> Int8GraphKnownBatches(int configs, Int8ConvGraphShape shape, IEnumerable<string> keys)
    {
        var own = Int8GraphStoreKey(configs, shape);
        var prefix = own[..(own.IndexOf("|x=", StringComparison.Ordinal) + 3)];
        var batches = new SortedSet<long>();
        foreach (var key in keys)
        {
            if (!key.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var end = key.IndexOf('x', prefix.Length);
            if (end > prefix.Length && long.TryParse(key.AsSpan(prefix.Length, end - prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var b)
                && b >= 1 && b != shape.X[0] && key == Int8GraphBatchKey(configs, shape, b))
            {
                batches.Add(b);
            }
        }

        return batches;
    }

    /// <summary>
    /// How far (in octaves, factors of 2) a reused choice may come from: 2, a factor of 4. ResNet-50's QDQ model at b=256
    /// on an H200 ran 39,213 img/s with b=1's choices reused (session 25 call 4) against 45,333 with its own search (call
    /// 1): a choice made for a few tiles does not carry to a full device. The limit itself is a judgement, not measured.
    /// </summary>
    internal const int Int8NearestOctaves = 2;

    /// <summary>
    /// The known batch size whose choice a problem at batch <paramref name="own"/> takes: the nearest by ratio within
    /// <see cref="Int8NearestOctaves"/> octaves (b=64 takes b=32 before b=128; of two as near, the larger); under
    /// <see cref="Int8GraphChoices.Octave"/> only one of its own octave (the power of two at or above it); none under
    /// <see cref="Int8GraphChoices.Exact"/>.
    /// </summary>
    internal static long? Int8GraphNeighbourBatch(long own, IEnumerable<long> known, Int8GraphChoices policy)
    {
        long? best = null;
        var bestDistance = double.PositiveInfinity;
        foreach (var b in known)
        {
            var distance = Math.Abs(Math.Log2((double)b / own));
            if (b == own || b < 1 || policy == Int8GraphChoices.Exact || (policy == Int8GraphChoices.Octave && Octave(b) != Octave(own)) || distance > Int8NearestOctaves + 1e-12)
            {
                continue;
            }

            if (distance < bestDistance - 1e-12 || (Math.Abs(distance - bestDistance) <= 1e-12 && b > best))
            {
                (best, bestDistance) = (b, distance);
            }
        }

        return best;
    }

    /// <summary>The trace line of a problem that took another batch size's stored choice without a timed search.</summary>
    internal static string Int8GraphReuseText(string node, string key, long batch, string engine) =>
        string.Create(CultureInfo.InvariantCulture, $"{node}: choice of b={batch} reused for {key} ({engine}; ran untimed, no search)");

    /// <summary>The trace line of a problem that took the first configuration that runs because the plan's search budget was spent.</summary>
    internal static string Int8GraphUntimedText(string node, string key, string engine, double budget, int untimed) =>
        string.Create(CultureInfo.InvariantCulture, $"{node}: plan's int8 search budget of {budget:0.##} s ({Int8Layers.GraphPlanSecondsSwitch}) spent: first configuration that runs taken untimed for {key} ({engine}); {untimed} problem{(untimed == 1 ? string.Empty : "s")} of this plan not timed");

    /// <summary>The choice (sums type, configuration index) stored under <paramref name="key"/>: the session's choices first, then <paramref name="cache"/>; null when neither has one.</summary>
    private (int Sums, int Index)? StoredInt8Graph(string key, TimingCache? cache)
    {
        if (_target.Choices.TryGet(key, out var stored) && stored.Length == 8)
        {
            return (BitConverter.ToInt32(stored, 0), BitConverter.ToInt32(stored, 4));
        }

        return cache is not null && cache.TryGet(key, out var timed) ? (timed.MathType, timed.Algo) : null;
    }

    private static byte[] EncodeInt8Graph(int sums, int index) => [.. BitConverter.GetBytes(sums), .. BitConverter.GetBytes(index)];

    /// <summary>One configuration tried for an int8 graph problem: where it came from, its engine in words, and its time or why it did not run.</summary>
    internal sealed record Int8GraphTrial(int Index, string Engine, double Ms, string? Failure);

    /// <summary>
    /// The trace line of a timed choice: every configuration that ran with its median time, those that did not with
    /// why, and the one kept, with what the timing cost the plan.
    /// </summary>
    internal static string Int8GraphTimingText(string node, string key, IReadOnlyList<Int8GraphTrial> trials, int chosen, int offered, double seconds)
    {
        var ran = trials.Count(t => t.Failure is null);
        var rows = string.Join("; ", trials.Select(t => t.Failure is null
            ? string.Create(CultureInfo.InvariantCulture, $"{(t.Index == chosen ? "* " : string.Empty)}{t.Engine}: {t.Ms:F4} ms")
            : $"{t.Engine}: {t.Failure}"));
        return string.Create(CultureInfo.InvariantCulture, $"{node}: timed {ran} of {offered} configurations for {key} in {seconds:F2} s ({rows})");
    }

    /// <summary>
    /// The fastest of the first <paramref name="configs"/> configurations of <paramref name="g"/> that plan and run (with one,
    /// the first, untimed), the search stopping after <paramref name="searchSeconds"/>; null (<paramref name="g"/>
    /// disposed) when none does. The choice is stored under <paramref name="storeKey"/> (null: not stored) in the
    /// session's choices and, when timed, in <paramref name="cache"/>.
    /// </summary>
    private Int8ConvGraph? PlanInt8Graph(Int8ConvGraph g, CudnnHandle handle, TimingCache? cache, string? storeKey, int sums, int configs, double searchSeconds, IReadOnlySet<long> skipped, ref string refusal)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var timed = configs > 1;
        var best = (Index: -1, Ms: double.PositiveInfinity);
        var trials = new List<Int8GraphTrial>();
        var ran = 0;
        for (var i = 0; i < g.Configs.Count && ran < configs; i++)
        {
            var index = i;
            if (TimedLibrary("int8_graph_plan", () => g.TryPlan(handle, index, MaxConvWorkspace)) is { } why)
            {
                refusal = why;
                continue;
            }

            if (skipped.Contains(g.EngineIndex))
            {
                refusal = $"{g.Engine} skipped ({Int8Layers.GraphSkipSwitch})";
                continue;
            }

            if (g.EngineWantsReorder)
            {
                // Its filter would have to be in cudnnReorderFilterAndBias's order; the route uploads plain KRSC.
                refusal = $"{g.Engine}: its filter must be reordered first";
                continue;
            }

            var (failure, ms) = TimedLibrary("int8_trial", () => RunInt8Graph(handle, g, timed));
            trials.Add(new Int8GraphTrial(i, g.Engine, ms, failure));
            if (failure is not null)
            {
                refusal = $"{g.Engine}: {failure}";
                continue;
            }

            ran++;
            if (best.Index < 0 || ms < best.Ms)
            {
                best = (i, ms);
                g.KeepCurrent();
            }

            if (timed && ran < configs && System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds >= searchSeconds)
            {
                // The search's time is spent (each configuration of a runtime-compiled engine compiles first): keep the
                // fastest so far; the trace says how many ran of how many offered.
                break;
            }
        }

        if (best.Index < 0 || !g.RestoreKept() || g.ConfigIndex != best.Index)
        {
            if (timed && trials.Count > 0)
            {
                Int8Layers.Trace(Int8GraphTimingText(_node, g.Shape.Key, trials, -1, g.Configs.Count, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds));
            }

            g.Dispose();
            return null;
        }

        if (timed)
        {
            Int8Layers.Trace(Int8GraphTimingText(_node, g.Shape.Key, trials, best.Index, g.Configs.Count, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds));
        }

        if (storeKey is not null)
        {
            _target.Choices.Set(storeKey, EncodeInt8Graph(sums, best.Index));
            cache?.Set(storeKey, new TacticChoice(best.Index, sums, g.WorkspaceBytes, best.Ms));
        }
        _int8Graphs.Add(g);
        return g;
    }

    /// <summary>
    /// Runs the graph's plan on scratch buffers (<see cref="Int8TrialFill"/>) on a stream of its own (timed when asked:
    /// median of five after a warm-up): null and the milliseconds, or cuDNN's error. The planning handle's stream is set for the trial only and
    /// put back after it (its own stream, not the legacy default stream, which would join a capture on another thread's
    /// blocking stream); an error in that reset never hides the trial's own. A fault that loses the CUDA context is thrown
    /// as a <see cref="BatchwiseException"/> naming the layer, the problem and the engine (nothing after it can run).
    /// </summary>
    private (string? Failure, double Ms) RunInt8Graph(CudnnHandle handle, Int8ConvGraph g, bool timed)
    {
        var s = g.Shape;
        Int8Layers.Trace($"{_node}: trial of {g.Engine} for {s.Key} ({s.Chain})");
        var sizes = s.Uids.Select(s.BytesOf).ToArray();
        var buffers = new List<DeviceMemory>();
        CudaException? failure = null;
        var ms = double.NaN;
        using var stream = CudaDriver.CreateStream();
        var previous = IntPtr.Zero;
        try
        {
            previous = Cudnn.GetStream(handle); // the planning handle's own stream (the session's upload stream), put back after
            Cudnn.SetStream(handle, stream.Handle);
        }
        catch (CudaException e)
        {
            // Before any trial work: the planning handle refuses a stream of this thread's current context.
            throw new BatchwiseException($"The int8 convolution {_node}: cuDNN's planning handle refuses a new stream for the graph's trial ({e.Message})", "Report this with the model; set BATCHWISE_INT8_GRAPH=off meanwhile.", e);
        }

        try
        {
            var fill = Int8TrialFill(timed, s.W[1] * s.W[2] * s.W[3]);
            for (var i = 0; i < s.Uids.Length; i++)
            {
                var b = CudaDriver.Allocate(Math.Max(sizes[i], 256));
                buffers.Add(b);
                var word = fill[s.Uids[i] - Int8ConvGraph.XUid]; // the fill is in uid order
                if (word == 0 || sizes[i] % 4 != 0)
                {
                    CudaDriver.MemsetD8(b.Pointer, 0, sizes[i], stream.Handle);
                }
                else
                {
                    CudaDriver.MemsetD32(b.Pointer, word, sizes[i] / 4, stream.Handle);
                }
            }

            using var workspace = CudaDriver.Allocate(Math.Max(g.WorkspaceBytes, 256));
            ulong[] pointers = [.. buffers.Select(b => b.Pointer)];
            if (Int8ConvGraph.CheckAddresses(s.Uids, pointers, g.WorkspaceBytes, workspace.Pointer, Math.Max(g.WorkspaceBytes, 256)) is { } why)
            {
                return (why, double.NaN);
            }

            using var pack = Cudnn.BackendVariantPackOf(s.Uids, pointers, workspace.Pointer);
            g.Execute(handle, pack);
            CudaDriver.Synchronize(stream);
            if (timed)
            {
                using var start = CudaDriver.CreateEvent();
                using var end = CudaDriver.CreateEvent();
                ms = MedianMilliseconds(stream, start, end, () => g.Execute(handle, pack));
            }
        }
        catch (CudaException e)
        {
            failure = e;
        }
        finally
        {
            foreach (var b in buffers)
            {
                b.Dispose();
            }

            try
            {
                Cudnn.SetStream(handle, previous);
            }
            catch (CudaException e)
            {
                // On a lost context cuDNN answers CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH here (the H200, session 8):
                // the trial's own error, when there is one, is the one to report.
                failure ??= e;
            }
        }

        if (failure is not null && LostContext(failure) is { } lost)
        {
            Int8Layers.Trace($"{_node}: trial of {g.Engine} faulted: {lost.Message}");
            throw new BatchwiseException(
                $"The int8 convolution {_node} faulted the GPU in the plan-time trial of cuDNN's graph ({s.Key}, {s.Chain}; {g.Engine}): {lost.Message}. The CUDA context is lost for this process",
                $"Set {Int8Layers.GraphSkipSwitch}={(g.EngineIndex >= 0 ? g.EngineIndex : 0)} to skip that engine, or {Int8Layers.GraphSwitch}=off to plan int8 convolutions without cuDNN's graph API; please report the layer and the engine.",
                failure);
        }

        if (failure is not null)
        {
            return (failure.Message, double.NaN);
        }

        return timed && !double.IsFinite(ms) ? ("the timed runs failed", ms) : (null, ms);
    }

    /// <summary>
    /// The 32-bit word each trial buffer (x, w, scale, offset, y, zero, residual, residual scale, SiLU output scale) is filled with: zeros
    /// for an untimed trial; for a timed one, x and w full-range bytes (x 63, -63, -128, 127; w 127, 63, -64, -127: no
    /// candidate is timed on zeros) whose sums come to -976 per tap, and a scale of 1 / (256 taps), so every output is
    /// about -4 steps, not saturated; the residual's bytes as x's, at a scale of 1/64 (at most 2 steps more); a SiLU's
    /// output scale 1.
    /// </summary>
    internal static uint[] Int8TrialFill(bool timed, long taps)
    {
        if (!timed)
        {
            return [0, 0, 0, 0, 0, 0, 0, 0, 0];
        }

        var scale = (float)(1.0 / (256.0 * Math.Max(taps, 1)));
        return [0x7F80C13Fu, 0x81C03F7Fu, BitConverter.SingleToUInt32Bits(scale), 0, 0, 0, 0x7F80C13Fu, BitConverter.SingleToUInt32Bits(1f / 64), BitConverter.SingleToUInt32Bits(1f)];
    }

    /// <summary>The CUDA driver errors after which the context is unusable (a kernel faulted: sticky until the process ends).</summary>
    internal static bool IsContextLoss(CudaException e) =>
        e.Library == "CUDA driver" && e.Status is 700 or 702 or 714 or 715 or 716 or 717 or 718 or 719;

    /// <summary>
    /// After <paramref name="failure"/>: the error that says the context is lost (the failure itself, or what a new
    /// stream's synchronization answers, since cuDNN reports a fault in its own words), or null while the context works.
    /// </summary>
    private static CudaException? LostContext(CudaException failure)
    {
        if (IsContextLoss(failure))
        {
            return failure;
        }

        try
        {
            using var probe = CudaDriver.CreateStream();
            CudaDriver.Synchronize(probe);
            return null;
        }
        catch (CudaException e) when (IsContextLoss(e))
        {
            return e;
        }
    }

    /// <summary>
    /// The graph's requantization vectors from the layer's tables (<see cref="Int8ConvTables"/>: multiplier and offset in
    /// output steps, float64), as float32 bits: the scale per channel; the offset per channel or per pixel and channel,
    /// with the output's stored zero point in it unless a ReLU follows; and, where a ReLU is followed by the zero point
    /// (<paramref name="zeroAdd"/>), that zero point per channel.
    /// </summary>
    /// <para>
    /// With a residual (<paramref name="residual"/>: its multiplier s_r/s_y and its zero point's share in output steps,
    /// (shift - z_r)·s_r/s_y for a residual stored as the int8 byte of its value less the shift), that share joins the
    /// offset and the multiplier follows as a per-channel vector: the tables then follow
    /// <see cref="Int8ConvGraphShape.Uids"/> from the scale on.
    /// </para>
    /// <para>
    /// With a SiLU (<paramref name="silu"/>: the convolution's own output scale s_y and, per output channel, the SiLU's
    /// QuantizeLinear scale s_z and stored zero point: one pair for all, or a pair a part where the SiLU's output is split):
    /// the scale and offset times s_y (the convolution's real value, before swish), the zero points, and 1/s_z last.
    /// </para>
    internal static HostTensor[] Int8GraphTables(HostTensor scale, HostTensor offset, double storedYZero, bool relu, bool zeroAdd, (double Scale, double Offset)? residual = null, (double YScale, (double[] Scale, double[] StoredZero) Out)? silu = null)
    {
        var k = scale.Count;
        var toReal = silu?.YScale ?? 1;
        var inOffset = (relu || silu is not null ? 0 : storedYZero) + (residual?.Offset ?? 0);
        var tables = new List<HostTensor>
        {
            HostTensor.CreateInts(ElementType.Int32, [k], i => BitConverter.SingleToInt32Bits((float)(scale[i] * toReal))),
            HostTensor.CreateInts(ElementType.Int32, [offset.Count], i => BitConverter.SingleToInt32Bits((float)((offset[i] + inOffset) * toReal))),
        };
        if (zeroAdd)
        {
            tables.Add(HostTensor.CreateInts(ElementType.Int32, [k], i => BitConverter.SingleToInt32Bits((float)(silu?.Out.StoredZero[i] ?? storedYZero))));
        }

        if (residual is { } r)
        {
            tables.Add(HostTensor.CreateInts(ElementType.Int32, [k], _ => BitConverter.SingleToInt32Bits((float)r.Scale)));
        }

        if (silu is { } f)
        {
            tables.Add(HostTensor.CreateInts(ElementType.Int32, [k], i => BitConverter.SingleToInt32Bits((float)(1 / f.Out.Scale[i]))));
        }

        return [.. tables];
    }

    /// <summary><see cref="Int8GraphTables"/> made once per session (a saved engine keeps them like other derived weights).</summary>
    private HostTensor[] Int8GraphConstants(string convRecipe, HostTensor w, HostTensor wScale, HostTensor? bias, HostTensor scale, HostTensor offset, double storedYZero, Int8ConvGraphShape shape, (double Scale, double Offset)? residual, (double YScale, (double[] Scale, double[] StoredZero) Out)? silu = null)
    {
        var residualPart = residual is { } r ? string.Create(CultureInfo.InvariantCulture, $":res{r.Scale:R},{r.Offset:R}") : string.Empty;
        var siluPart = silu is { } f ? string.Create(CultureInfo.InvariantCulture, $":silu{f.YScale:R},{string.Join(',', f.Out.Scale.Distinct().Select(v => v.ToString("R", CultureInfo.InvariantCulture)))},{string.Join(',', f.Out.StoredZero.Distinct().Select(v => v.ToString("R", CultureInfo.InvariantCulture)))},{f.Out.Scale.Length}") : string.Empty;
        var recipe = string.Create(CultureInfo.InvariantCulture, $"{convRecipe}:graph:r{(shape.Relu ? 1 : 0)}:z{(shape.ZeroAdd ? 1 : 0)}{residualPart}{siluPart}");
        return _target.Derive(recipe, [w, wScale, bias], () => Int8GraphTables(scale, offset, storedYZero, shape.Relu, shape.ZeroAdd, residual, silu));
    }
}
