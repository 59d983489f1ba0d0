using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;
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
    /// that a later plan or process does not time again; with one configuration, the first that runs, untimed. Null and
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
        (int Sums, int Index)? known = null;
        if (_target.Choices.TryGet(storeKey, out var stored) && stored.Length == 8)
        {
            known = (BitConverter.ToInt32(stored, 0), BitConverter.ToInt32(stored, 4));
        }
        else if (cache is not null && cache.TryGet(storeKey, out var timed))
        {
            known = (timed.MathType, timed.Algo);
        }

        if (known is { } k && Int8Layers.GraphSums.Contains(k.Sums))
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
                if (PlanInt8Graph(g, handle, cache, storeKey, sums, configs, skipped, ref refusal) is { } chosen)
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
    /// the first, untimed); null (<paramref name="g"/> disposed) when none does. The choice is stored under
    /// <paramref name="storeKey"/> in the session's choices and, when timed, in <paramref name="cache"/>.
    /// </summary>
    private Int8ConvGraph? PlanInt8Graph(Int8ConvGraph g, CudnnHandle handle, TimingCache? cache, string storeKey, int sums, int configs, IReadOnlySet<long> skipped, ref string refusal)
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

            if (timed && ran < configs && System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds >= Int8Layers.GraphSearchSeconds)
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

        _target.Choices.Set(storeKey, EncodeInt8Graph(sums, best.Index));
        cache?.Set(storeKey, new TacticChoice(best.Index, sums, g.WorkspaceBytes, best.Ms));
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
        var sizes = new[] { Tensor.ElementCountOf(s.X), Tensor.ElementCountOf(s.W), 4 * s.Y[1], 4 * s.OffsetCount, Tensor.ElementCountOf(s.Y), 4 * s.Y[1] };
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
                if (fill[i] == 0 || sizes[i] % 4 != 0)
                {
                    CudaDriver.MemsetD8(b.Pointer, 0, sizes[i], stream.Handle);
                }
                else
                {
                    CudaDriver.MemsetD32(b.Pointer, fill[i], sizes[i] / 4, stream.Handle);
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
    /// The 32-bit word each trial buffer (x, w, scale, offset, y, zero) is filled with: zeros for an untimed trial; for a
    /// timed one, x and w full-range bytes (x 63, -63, -128, 127; w 127, 63, -64, -127: no candidate is timed on zeros)
    /// whose sums come to -976 per tap, and a scale of 1 / (256 taps), so every output is about -4 steps, not saturated.
    /// </summary>
    internal static uint[] Int8TrialFill(bool timed, long taps)
    {
        if (!timed)
        {
            return [0, 0, 0, 0, 0, 0];
        }

        var scale = (float)(1.0 / (256.0 * Math.Max(taps, 1)));
        return [0x7F80C13Fu, 0x81C03F7Fu, BitConverter.SingleToUInt32Bits(scale), 0, 0, 0];
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
    internal static HostTensor[] Int8GraphTables(HostTensor scale, HostTensor offset, double storedYZero, bool relu, bool zeroAdd)
    {
        var k = scale.Count;
        var inOffset = relu ? 0 : storedYZero;
        var tables = new List<HostTensor>
        {
            HostTensor.CreateInts(ElementType.Int32, [k], i => BitConverter.SingleToInt32Bits((float)scale[i])),
            HostTensor.CreateInts(ElementType.Int32, [offset.Count], i => BitConverter.SingleToInt32Bits((float)(offset[i] + inOffset))),
        };
        if (zeroAdd)
        {
            tables.Add(HostTensor.CreateInts(ElementType.Int32, [k], _ => BitConverter.SingleToInt32Bits((float)storedYZero)));
        }

        return [.. tables];
    }

    /// <summary><see cref="Int8GraphTables"/> made once per session (a saved engine keeps them like other derived weights).</summary>
    private HostTensor[] Int8GraphConstants(string convRecipe, HostTensor w, HostTensor wScale, HostTensor? bias, HostTensor scale, HostTensor offset, double storedYZero, Int8ConvGraphShape shape)
    {
        var recipe = string.Create(CultureInfo.InvariantCulture, $"{convRecipe}:graph:r{(shape.Relu ? 1 : 0)}:z{(shape.ZeroAdd ? 1 : 0)}");
        return _target.Derive(recipe, [w, wScale, bias], () => Int8GraphTables(scale, offset, storedYZero, shape.Relu, shape.ZeroAdd));
    }
}
