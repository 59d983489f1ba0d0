using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// One int8 convolution as a cuDNN backend (graph) API problem: int8 NHWC x, int8 KRSC w, and the requantization fused
/// behind the convolution: sums * scale[k] + offset (per channel, or per output pixel and channel where the input's
/// stored zero point is not 0 and the convolution pads) [-> ReLU [+ zero[k]]] -> saturated int8 NHWC y.
/// </summary>
/// <param name="X">Input shape, NCHW order (stored channels-last).</param>
/// <param name="W">Filter shape, KCRS order (stored KRSC).</param>
/// <param name="Y">Output shape, NCHW order (stored channels-last).</param>
/// <param name="Pads">Symmetric pads (height, width).</param>
/// <param name="Strides">Strides (height, width).</param>
/// <param name="PerPixelOffset">The offset is [1, K, Ho, Wo] (channels-last, broadcast over the batch) rather than [1, K, 1, 1].</param>
/// <param name="Relu">A ReLU at the real zero follows the offset.</param>
/// <param name="ZeroAdd">After the ReLU, the output's stored zero point is added per channel (a ReLU whose floor is stored neither as 0 nor as -128).</param>
/// <param name="Residual">
/// A residual block's int8 input (shape <paramref name="Y"/>, channels-last) joins before the ReLU: residual * rscale[k]
/// is added to the offset's sum (the residual's zero point is in the offset), so the graph writes the block's output.
/// </param>
/// <param name="Activation">
/// An activation after the offset (and residual): "swish" (x·sigmoid(x), a SiLU), "gelu" (erf) or "gelu_tanh"; null for
/// none. With an int8 output the scale and offset give the real value, the activation's result is multiplied by
/// outscale[k] (1/s of the QuantizeLinear after it) and the zero point added (<paramref name="ZeroAdd"/> where it is not
/// stored as 0), so the graph writes that QuantizeLinear's bytes.
/// </param>
/// <param name="Out">
/// What y holds: int8 (the requantized output), or float16 or float32 (the real value itself, for a QDQ MatMul's float
/// output: the scale and offset then dequantize).
/// </param>
internal sealed record Int8ConvGraphShape(long[] X, long[] W, long[] Y, long[] Pads, long[] Strides, bool PerPixelOffset, bool Relu, bool ZeroAdd, bool Residual = false, string? Activation = null, ElementType Out = ElementType.Int8)
{
    /// <summary>Whether the activation's result is requantized by an outscale vector (an activation and an int8 output).</summary>
    public bool HasOutScale => Activation is not null && Out == ElementType.Int8;

    /// <summary>The problem as a cache key (tactic store, timing cache); a residual's or a SiLU's part only where there is one, so earlier keys stay valid.</summary>
    public string Key => string.Create(CultureInfo.InvariantCulture, $"x={J(X)}|w={J(W)}|y={J(Y)}|pad={J(Pads)}|stride={J(Strides)}|offset={(PerPixelOffset ? "pixel" : "channel")}|relu={(Relu ? 1 : 0)}|zero={(ZeroAdd ? 1 : 0)}{(Residual ? "|residual=int8*rscale[k]" : string.Empty)}{(Activation is null ? string.Empty : $"|{Activation}{(HasOutScale ? "*outscale[k]" : string.Empty)}")}{(Out != ElementType.Int8 ? $"|y={Out.ShortName()}" : string.Empty)}");

    /// <summary>Elements of the offset tensor.</summary>
    public long OffsetCount => PerPixelOffset ? Y[1] * Y[2] * Y[3] : Y[1];

    /// <summary>The unique ids of the graph's real tensors, in the order of the step's buffers.</summary>
    public long[] Uids =>
        [
            Int8ConvGraph.XUid, Int8ConvGraph.WUid, Int8ConvGraph.ScaleUid, Int8ConvGraph.OffsetUid, Int8ConvGraph.YUid,
            .. ZeroAdd ? new[] { Int8ConvGraph.ZeroUid } : [],
            .. Residual ? new[] { Int8ConvGraph.ResidualUid, Int8ConvGraph.ResidualScaleUid } : [],
            .. HasOutScale ? new[] { Int8ConvGraph.OutScaleUid } : [],
        ];

    /// <summary>The bytes of the real tensor <paramref name="uid"/> (a trial's scratch buffer).</summary>
    public long BytesOf(long uid) => uid switch
    {
        Int8ConvGraph.XUid => Tensor.ElementCountOf(X),
        Int8ConvGraph.WUid => Tensor.ElementCountOf(W),
        Int8ConvGraph.OffsetUid => 4 * OffsetCount,
        Int8ConvGraph.YUid => Tensor.ElementCountOf(Y) * Out.SizeOf(),
        Int8ConvGraph.ResidualUid => Tensor.ElementCountOf(Y),
        _ => 4 * Y[1],
    };

    /// <summary>The fused chain in words (a layer's decision says it).</summary>
    public string Chain => $"conv * scale[k] + offset[{(PerPixelOffset ? "pixel, k" : "k")}]{(Residual ? " + residual * rscale[k]" : string.Empty)}{(Relu ? " -> relu" : string.Empty)}{(Activation is null ? string.Empty : $" -> {Activation}{(HasOutScale ? " * outscale[k]" : string.Empty)}")}{(ZeroAdd ? " + zero[k]" : string.Empty)} -> {Out.ShortName()}";

    /// <summary>NCHW dimensions of a channels-last tensor as strides.</summary>
    internal static long[] ChannelsLast(long[] d) => [d[1] * d[2] * d[3], 1, d[3] * d[1], d[1]];

    private static string J(long[] v) => string.Join('x', v);
}

/// <summary>
/// The descriptors of one <see cref="Int8ConvGraphShape"/> (tensors, operations, operation graph), the engine
/// configurations cuDNN's heuristics offer for it and, once one finalizes, its execution plan. Everything lives as long as
/// the plan (a step of an execution plan owns it).
/// </summary>
internal sealed class Int8ConvGraph : IDisposable
{
    public const long XUid = 1, WUid = 2, ScaleUid = 3, OffsetUid = 4, YUid = 5, ZeroUid = 6, ResidualUid = 7, ResidualScaleUid = 8, OutScaleUid = 9;

    private readonly List<NativeHandle> _descriptors = [];

    private Int8ConvGraph(Int8ConvGraphShape shape, int sumsType)
    {
        Shape = shape;
        SumsType = sumsType;
    }

    public Int8ConvGraphShape Shape { get; }

    /// <summary>The convolution's virtual output type: CUDNN_DATA_INT32 or CUDNN_DATA_FLOAT.</summary>
    public int SumsType { get; }

    /// <summary>
    /// cuDNN's engine configurations for the graph: heuristics mode A's, best first, then those of mode B and of the
    /// fallback list that mode A did not offer (<see cref="Candidates"/>).
    /// </summary>
    public IReadOnlyList<CudnnBackendEngineConfig> Configs { get; private set; } = [];

    /// <summary>Where each of <see cref="Configs"/> came from ("A0": mode A's first) and its engine and knobs ("eng4_k2=1"; null where cuDNN did not say).</summary>
    public IReadOnlyList<(string Source, string? Tag)> Sources { get; private set; } = [];

    /// <summary>The heuristics modes asked, in order, with the letter a source names them by.</summary>
    private static readonly (char Letter, int Mode)[] HeuristicsModes = [('A', Cudnn.CUDNN_HEUR_MODE_A), ('B', Cudnn.CUDNN_HEUR_MODE_B), ('F', Cudnn.CUDNN_HEUR_MODE_FALLBACK)];

    /// <summary>The finalized plan (null until <see cref="TryPlan"/> succeeds).</summary>
    public CudnnBackendExecutionPlan? Plan { get; private set; }

    /// <summary>Index into <see cref="Configs"/> of <see cref="Plan"/>.</summary>
    public int ConfigIndex { get; private set; } = -1;

    public long WorkspaceBytes { get; private set; }

    /// <summary>cuDNN's global index of the engine of <see cref="Plan"/> (-1 where unknown).</summary>
    public long EngineIndex { get; private set; } = -1;

    /// <summary>The engine of <see cref="Plan"/> wants its filter (or bias) reordered to int8x32 first, which this route does not do.</summary>
    public bool EngineWantsReorder { get; private set; }

    /// <summary>The engine of <see cref="Plan"/> in words: cuDNN's global engine index, whether it compiles at run time, the sums' type.</summary>
    public string Engine { get; private set; } = "no plan";

    /// <summary>The byte alignment every real tensor's address is declared with (CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT).</summary>
    public const long Alignment = 16;

    /// <summary>
    /// Executions of one plan are serialized: cuDNN's backend execution plans are not safe to execute from several threads
    /// at once (pytorch/pytorch#103939: cuDNN's answer), and the slots of a session share the plan.
    /// </summary>
    public Lock ExecuteLock { get; } = new();

    /// <summary>
    /// Why the addresses of one execution break what the graph's descriptors declare (each real tensor at
    /// <see cref="Alignment"/> bytes, a workspace where the plan wants one): null when they fit. What cuDNN would otherwise
    /// find out as a misaligned-address fault, which loses the CUDA context.
    /// </summary>
    public static string? CheckAddresses(long[] uids, ulong[] pointers, long workspaceBytes, ulong workspace, long workspaceAvailable)
    {
        for (var i = 0; i < uids.Length; i++)
        {
            if (pointers[i] == 0)
            {
                return $"tensor {uids[i]} has no address";
            }

            if (pointers[i] % Alignment != 0)
            {
                return $"tensor {uids[i]} at 0x{pointers[i]:x} is not {Alignment}-byte aligned as its descriptor declares";
            }
        }

        if (workspaceBytes > 0 && (workspace == 0 || workspaceAvailable < workspaceBytes))
        {
            return $"the plan wants {workspaceBytes} bytes of workspace and the slot has {(workspace == 0 ? 0 : workspaceAvailable)}";
        }

        return null;
    }

    /// <summary>
    /// The problem without descriptors or a plan (<see cref="IPlanTarget.PlansConvolutionsWithoutLibrary"/>): what a plan
    /// built on a machine without a GPU emits, to be read (its steps, its labels), never run.
    /// </summary>
    public static Int8ConvGraph WithoutLibrary(Int8ConvGraphShape shape, int sumsType) => new(shape, sumsType) { Engine = "planned without cuDNN" };

    /// <summary>The graph's descriptors and cuDNN's configurations for it; cuDNN's refusal as a <see cref="CudaException"/>.</summary>
    public static Int8ConvGraph Describe(CudnnHandle handle, Int8ConvGraphShape s, int sumsType)
    {
        var g = new Int8ConvGraph(s, sumsType);
        try
        {
            T Keep<T>(T d)
                where T : NativeHandle
            {
                g._descriptors.Add(d);
                return d;
            }

            var vector = new long[] { 1, s.Y[1], 1, 1 };
            var offsetDims = s.PerPixelOffset ? new long[] { 1, s.Y[1], s.Y[2], s.Y[3] } : vector;
            var uid = 100L;
            CudnnBackendTensor Virtual(int type) => Keep(Cudnn.BackendTensorOf(++uid, type, s.Y, Int8ConvGraphShape.ChannelsLast(s.Y), true));
            var x = Keep(Cudnn.BackendTensorOf(XUid, Cudnn.CUDNN_DATA_INT8, s.X, Int8ConvGraphShape.ChannelsLast(s.X), false));
            var w = Keep(Cudnn.BackendTensorOf(WUid, Cudnn.CUDNN_DATA_INT8, s.W, Int8ConvGraphShape.ChannelsLast(s.W), false));
            var scale = Keep(Cudnn.BackendTensorOf(ScaleUid, Cudnn.CUDNN_DATA_FLOAT, vector, Int8ConvGraphShape.ChannelsLast(vector), false));
            var offset = Keep(Cudnn.BackendTensorOf(OffsetUid, Cudnn.CUDNN_DATA_FLOAT, offsetDims, Int8ConvGraphShape.ChannelsLast(offsetDims), false));
            var outType = s.Out switch
            {
                ElementType.Int8 => Cudnn.CUDNN_DATA_INT8,
                ElementType.Float16 => Cudnn.CUDNN_DATA_HALF,
                ElementType.Float => Cudnn.CUDNN_DATA_FLOAT,
                _ => throw new ArgumentException($"an int8 graph convolution writes int8, float16 or float32, not {s.Out.ShortName()}"),
            };
            var y = Keep(Cudnn.BackendTensorOf(YUid, outType, s.Y, Int8ConvGraphShape.ChannelsLast(s.Y), false));
            var conv = Keep(Cudnn.BackendConvolutionOf(Cudnn.CUDNN_DATA_INT32, s.Pads, s.Strides, [1, 1]));
            var ops = new List<NativeHandle>();
            var sums = Virtual(sumsType);
            ops.Add(Keep(Cudnn.BackendConvolutionForwardOf(conv, x, w, sums)));

            // The pointwise chain; its last operation writes y (int8: cuDNN rounds and saturates; float16 or float32: the value).
            var steps = new List<(int Mode, CudnnBackendTensor? B)> { (Cudnn.CUDNN_POINTWISE_MUL, scale), (Cudnn.CUDNN_POINTWISE_ADD, offset) };
            if (s.Residual)
            {
                // The residual's own operation: int8 r * rscale[k] into a float virtual tensor, which the chain then adds.
                var residual = Keep(Cudnn.BackendTensorOf(ResidualUid, Cudnn.CUDNN_DATA_INT8, s.Y, Int8ConvGraphShape.ChannelsLast(s.Y), false));
                var residualScale = Keep(Cudnn.BackendTensorOf(ResidualScaleUid, Cudnn.CUDNN_DATA_FLOAT, vector, Int8ConvGraphShape.ChannelsLast(vector), false));
                var scaled = Virtual(Cudnn.CUDNN_DATA_FLOAT);
                ops.Add(Keep(Cudnn.BackendPointwiseOperationOf(Keep(Cudnn.BackendPointwiseOf(Cudnn.CUDNN_POINTWISE_MUL)), residual, residualScale, scaled)));
                steps.Add((Cudnn.CUDNN_POINTWISE_ADD, scaled));
            }

            if (s.Relu)
            {
                steps.Add((Cudnn.CUDNN_POINTWISE_RELU_FWD, null));
            }

            if (s.Activation is { } activation)
            {
                steps.Add((activation switch
                {
                    "swish" => Cudnn.CUDNN_POINTWISE_SWISH_FWD,
                    "gelu" => Cudnn.CUDNN_POINTWISE_GELU_FWD,
                    "gelu_tanh" => Cudnn.CUDNN_POINTWISE_GELU_APPROX_TANH_FWD,
                    _ => throw new ArgumentException($"an int8 graph convolution's activation is swish, gelu or gelu_tanh, not {activation}"),
                }, null));
                if (s.HasOutScale)
                {
                    steps.Add((Cudnn.CUDNN_POINTWISE_MUL, Keep(Cudnn.BackendTensorOf(OutScaleUid, Cudnn.CUDNN_DATA_FLOAT, vector, Int8ConvGraphShape.ChannelsLast(vector), false))));
                }
            }

            if (s.ZeroAdd)
            {
                steps.Add((Cudnn.CUDNN_POINTWISE_ADD, Keep(Cudnn.BackendTensorOf(ZeroUid, Cudnn.CUDNN_DATA_FLOAT, vector, Int8ConvGraphShape.ChannelsLast(vector), false))));
            }

            var current = sums;
            for (var i = 0; i < steps.Count; i++)
            {
                var next = i == steps.Count - 1 ? y : Virtual(Cudnn.CUDNN_DATA_FLOAT);
                var pointwise = Keep(Cudnn.BackendPointwiseOf(steps[i].Mode));
                ops.Add(Keep(Cudnn.BackendPointwiseOperationOf(pointwise, current, steps[i].B, next)));
                current = next;
            }

            var graph = Keep(Cudnn.BackendGraphOf(handle, ops));
            var offered = new List<(CudnnBackendEngineConfig Config, string Source, string? Tag)>();
            foreach (var (letter, mode) in HeuristicsModes)
            {
                List<CudnnBackendEngineConfig> configs;
                try
                {
                    configs = Cudnn.BackendConfigsOf(graph, mode);
                }
                catch (CudaException) when (mode != Cudnn.CUDNN_HEUR_MODE_A)
                {
                    continue; // mode B or the fallback list refusing the graph leaves mode A's configurations
                }

                offered.AddRange(configs.Select((c, i) => (c, string.Create(CultureInfo.InvariantCulture, $"{letter}{i}"), TagOf(c))));
            }

            var keep = Candidates([.. offered.Select(o => o.Tag)]);
            foreach (var dropped in offered.Where((_, i) => !keep.Contains(i)))
            {
                dropped.Config.Dispose();
            }

            g.Configs = [.. keep.Select(i => offered[i].Config)];
            g.Sources = [.. keep.Select(i => (offered[i].Source, offered[i].Tag))];
            return g;
        }
        catch
        {
            g.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The indices of the configurations worth planning, in the order offered: each engine-and-knobs tag once (mode B and
    /// the fallback list repeat much of mode A); a configuration whose tag cuDNN did not give is kept.
    /// </summary>
    internal static List<int> Candidates(IReadOnlyList<string?> tags)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var keep = new List<int>();
        for (var i = 0; i < tags.Count; i++)
        {
            if (tags[i] is not { } tag || seen.Add(tag))
            {
                keep.Add(i);
            }
        }

        return keep;
    }

    /// <summary>"eng4_k2=1_k11=0": the engine's global index and its knob choices, as cudnn-frontend tags a plan; null where cuDNN does not say.</summary>
    internal static string? TagOf(CudnnBackendEngineConfig config)
    {
        try
        {
            return Tag(Cudnn.BackendEngineOf(config).GlobalIndex, Cudnn.BackendKnobsOf(config));
        }
        catch (CudaException)
        {
            return null;
        }
    }

    /// <summary>See <see cref="TagOf"/>.</summary>
    internal static string Tag(long engine, IEnumerable<(int Type, long Value)> knobs) =>
        string.Create(CultureInfo.InvariantCulture, $"eng{engine}{string.Concat(knobs.Select(k => string.Create(CultureInfo.InvariantCulture, $"_k{k.Type}={k.Value}")))}");

    /// <summary>Finalizes the plan of configuration <paramref name="index"/> (replacing any earlier plan): null, or cuDNN's refusal.</summary>
    public string? TryPlan(CudnnHandle handle, int index, long maxWorkspace)
    {
        if (index < 0 || index >= Configs.Count)
        {
            return $"configuration {index} of {Configs.Count}";
        }

        try
        {
            var (plan, workspace) = Cudnn.BackendPlanOf(handle, Configs[index]);
            if (workspace > maxWorkspace)
            {
                plan.Dispose();
                return $"configuration {index} wants {workspace >> 20} MiB of workspace";
            }

            if (!ReferenceEquals(Plan, _kept.Plan))
            {
                Plan?.Dispose();
            }

            (Plan, WorkspaceBytes, ConfigIndex) = (plan, workspace, index);
            (EngineIndex, EngineWantsReorder, Engine) = DescribeEngine(Configs[index], SumsType, index, Sources.Count > index ? Sources[index] : default);
            return null;
        }
        catch (CudaException e)
        {
            return e.Message;
        }
    }

    /// <summary>The plan <see cref="KeepCurrent"/> set aside (a later <see cref="TryPlan"/> does not dispose it).</summary>
    private (CudnnBackendExecutionPlan? Plan, int Index, long Workspace, long Engine, bool Reorder, string Text) _kept = (null, -1, 0, -1, false, "no plan");

    /// <summary>
    /// Sets the current plan aside as the one to keep while later configurations are tried (a timed search keeps its
    /// fastest so far): the plan that was kept before is disposed unless it is the current one.
    /// </summary>
    public void KeepCurrent()
    {
        if (_kept.Plan is { } previous && !ReferenceEquals(previous, Plan))
        {
            previous.Dispose();
        }

        _kept = (Plan, ConfigIndex, WorkspaceBytes, EngineIndex, EngineWantsReorder, Engine);
    }

    /// <summary>
    /// Makes the kept plan (<see cref="KeepCurrent"/>) current again, disposing the one tried after it: no second
    /// finalization of a configuration (on the H200, session 12, every timed search that finalized its fastest configuration
    /// again after later ones came back empty; only those whose fastest was the last tried kept it). False when nothing was kept.
    /// </summary>
    public bool RestoreKept()
    {
        if (_kept.Plan is null)
        {
            return false;
        }

        if (!ReferenceEquals(Plan, _kept.Plan))
        {
            Plan?.Dispose();
        }

        (Plan, ConfigIndex, WorkspaceBytes, EngineIndex, EngineWantsReorder, Engine) = _kept;
        return true;
    }

    /// <summary>"engine 12 (runtime-compiled), int32 sums, configuration 0 (B3 eng12_k2=1)": what a decision and a fault name.</summary>
    private static (long Index, bool Reorder, string Text) DescribeEngine(CudnnBackendEngineConfig config, int sumsType, int index, (string Source, string? Tag) source)
    {
        var sums = sumsType == Cudnn.CUDNN_DATA_INT32 ? "int32" : "float";
        var from = source.Source is null ? string.Empty : $" ({source.Source}{(source.Tag is null ? string.Empty : " " + source.Tag)})";
        try
        {
            var (global, runtime, reorder) = Cudnn.BackendEngineOf(config);
            return (global, reorder, string.Create(CultureInfo.InvariantCulture, $"engine {global}{(runtime ? " (runtime-compiled)" : string.Empty)}{(reorder ? " (wants int8x32 reordered filters)" : string.Empty)}, {sums} sums, configuration {index}{from}"));
        }
        catch (CudaException)
        {
            return (-1, false, string.Create(CultureInfo.InvariantCulture, $"{sums} sums, configuration {index}{from}"));
        }
    }

    /// <summary>Runs the plan on <paramref name="handle"/>'s stream with the tensors' addresses in <see cref="Int8ConvGraphShape.Uids"/> order.</summary>
    public void Execute(CudnnHandle handle, CudnnBackendVariantPack pack)
    {
        var plan = Plan ?? throw new BatchwiseException($"The int8 graph convolution {Shape.Key} has no execution plan", "Report this: a graph step is emitted only once its plan finalized.");
        lock (ExecuteLock)
        {
            Cudnn.BackendExecute(handle, plan, pack);
        }
    }

    public void Dispose()
    {
        if (_kept.Plan is { } kept && !ReferenceEquals(kept, Plan))
        {
            kept.Dispose();
        }

        Plan?.Dispose();
        foreach (var c in Configs)
        {
            c.Dispose();
        }

        for (var i = _descriptors.Count - 1; i >= 0; i--)
        {
            _descriptors[i].Dispose();
        }
    }
}
