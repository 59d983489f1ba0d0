using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>What the compiler needs from the device: compute capability and library handles to choose algorithms.</summary>
internal interface IPlanTarget
{
    int ComputeCapability { get; }

    bool AllowTf32 { get; }

    CudnnHandle PlanningCudnn { get; }

    CublasLtHandle PlanningCublasLt { get; }

    /// <summary>Float32 as given, or float16 storage with float32 accumulation (tensor cores).</summary>
    Precision Precision => Precision.Fp32;

    /// <summary>The session runs --precision int8: the int8 path is on for it, as BATCHWISE_INT8=on turns it on for every session.</summary>
    bool Int8 => false;

    /// <summary>Where timed convolution algorithms are kept; null: take cuDNN's heuristics, time nothing.</summary>
    TimingCache? Tactics => null;

    /// <summary>
    /// Where the timed configurations of int8 graph convolutions are kept between processes: the device's timing cache
    /// even without timed tactics (the int8 route is opt-in and times its candidates always); null: kept for the session only.
    /// </summary>
    TimingCache? Int8GraphTimings => Tactics;

    /// <summary>
    /// A value derived from session constants alone (a BN-folded filter, a channels-last reorder, a folded node): made
    /// once per session and shared by every plan, so a plan for a new shape neither recomputes nor re-uploads weights.
    /// </summary>
    T Derive<T>(string recipe, IReadOnlyList<HostTensor?> sources, Func<T> make)
        where T : class => make();

    /// <summary>cuDNN's and cuBLASLt's choices by problem, kept for the session (and a saved engine): heuristics are asked once per shape.</summary>
    TacticStore Choices => TacticStore.None;

    /// <summary>
    /// Matrix products planned as <see cref="MatmulProblem"/>s alone, without cuBLASLt (no descriptors, no algorithm: the
    /// plan runs only on a reference runner): for plan tests on machines without a GPU.
    /// </summary>
    bool PlansMatmulsWithoutLibrary => false;

    /// <summary>
    /// cuDNN convolutions planned as <see cref="ConvProblemStep"/>s alone, without cuDNN (no descriptors, no algorithm:
    /// the plan cannot run): for timing and checking plan builds on machines without a GPU.
    /// </summary>
    bool PlansConvolutionsWithoutLibrary => false;

    /// <summary>
    /// Independent library steps run on a second stream beside the main one (<see cref="StepLanes"/>), and a residual
    /// branch's single convolution is planned before the branch it joins so it can (<see cref="GraphFacts.Nodes"/>).
    /// </summary>
    bool ConcurrentBranches => false;

    /// <summary>A convolution's first plan in a new batch octave starts from the nearest known octave's choice (confirmed by a workspace query) instead of cuDNN's heuristics.</summary>
    bool NearestBatchChoices => false;

    /// <summary>
    /// Threads with cuDNN handles of their own that confirm stored convolution choices at a new exact shape while the
    /// plan's lowering goes on; null: those queries are made in sequence on <see cref="PlanningCudnn"/>.
    /// </summary>
    ConvQueryPool? ConvQueries => null;

    /// <summary>Who runs grouped convolutions in half precision: the own kernel where chosen (auto), always, or never.</summary>
    GroupedConvChoice GroupedConvolutions => GroupedConvChoice.Auto;

    /// <summary>Who runs pointwise convolutions in half precision: cuBLASLt (the default) or cuDNN.</summary>
    PointwiseConvChoice PointwiseConvolutions => PointwiseConvChoice.Gemm;

    /// <summary>
    /// Who runs matrix products of 1 to 8 rows: cuBLASLt here (plan tests keep their <see cref="MatmulStep"/>s); a
    /// session takes BATCHWISE_SMALL_MATMUL's choice (by default the own kernel for one-row products).
    /// </summary>
    SmallMatmulChoice SmallMatmuls => SmallMatmulChoice.Library;

    /// <summary>Who runs convolutions over fewer than 8 channels in half precision (a stem): cuDNN (the default), one GEMM or the own kernel.</summary>
    StemConvChoice StemConvolutions => StemConvChoice.Cudnn;

    /// <summary>The most shared memory a block of a generated kernel may have on the device (its opt-in limit; 227 KB on sm_90).</summary>
    int MaxSharedBytesPerBlock => KernelCache.StaticSharedBytes;

    /// <summary>Who runs dense convolutions too small to fill the device in half precision: cuDNN here; a session takes BATCHWISE_SPLITK_CONV's choice (the own split-K kernel by default).</summary>
    SplitKConvChoice SplitKConvolutions => SplitKConvChoice.Off;

    /// <summary>A residual block's projection shortcut computed in its block end's split-K kernel (<see cref="Kernels.SplitKShortcut"/>): off here; a session takes BATCHWISE_SPLITK_PROJECTION's.</summary>
    bool SplitKProjections => false;

    /// <summary>Who runs a QDQ model's int8 convolutions: the libraries here; a session takes BATCHWISE_INT8_CONV's choice (the own 1x1 kernel for expanding 1x1s and the libraries elsewhere by default).</summary>
    Int8ConvChoice Int8Convolutions => Int8ConvChoice.Library;

    /// <summary>Who runs a QDQ model's int8 MatMuls and Gemms: cuBLASLt here; a session takes BATCHWISE_INT8_GEMM's choice (cuDNN's graph by default).</summary>
    Int8GemmChoice Int8Gemms => Int8GemmChoice.Cublaslt;

    /// <summary>Tiles in flight a block of the own pointwise int8 kernel: two here; a session takes BATCHWISE_INT8_POINTWISE_STAGES's.</summary>
    int Int8PointwiseStages => KernelSource.Int8PointwiseStages;

    /// <summary>Resident blocks an SM the own pointwise int8 kernel is built for: two here; a session takes BATCHWISE_INT8_POINTWISE_BLOCKS's.</summary>
    int Int8PointwiseResidentBlocks => KernelSource.Int8PointwiseResidentBlocks;

    /// <summary>The own pointwise int8 kernel takes every channel count it can (64-256 in 32s, outputs in 64s): on here; a session takes BATCHWISE_INT8_POINTWISE_WIDE's.</summary>
    bool Int8PointwiseWide => true;

    /// <summary>The own pointwise int8 kernel with every warp its own pipeline (<see cref="KernelSource.Int8WarpPointwise"/>): off here; a session takes BATCHWISE_INT8_POINTWISE_KERNEL's.</summary>
    bool Int8PointwiseWarps => false;

    /// <summary>A residual block's projection shortcut computed inside its block end's pointwise kernel (<see cref="Kernels.Int8PointwiseProjection"/>): off here; a session takes BATCHWISE_INT8_PROJECTION's.</summary>
    bool Int8Projections => false;

    /// <summary>The fewest warps a block with which a residual block end's pointwise kernel computes the next block's 1x1 reduction too (<see cref="KernelSource.Int8ChainPointwise"/>; 0: never): 0 here; a session takes BATCHWISE_INT8_CHAIN's.</summary>
    int Int8ChainLeastWarps => 0;

    /// <summary>The warp-tiled pointwise int8 kernel's products on warpgroup MMA where the device has it (sm_90): off here; a session takes BATCHWISE_INT8_WGMMA's.</summary>
    bool Int8WarpGroups => false;

    /// <summary>Warps a block of the warp-tiled pointwise int8 kernel may have where only one block fits an SM: eight here; a session takes BATCHWISE_INT8_POINTWISE_WARPS's (16 by default).</summary>
    int Int8PointwiseMostWarps => KernelSource.Int8WarpPointwiseBlock / 32;

    /// <summary>The warp tiles of the warp-tiled pointwise int8 kernel: 16 pixels here; a session takes BATCHWISE_INT8_POINTWISE_ROWS's (16 by default).</summary>
    Int8WarpTile Int8PointwiseTile => Int8WarpTile.Sixteen;

    /// <summary>Who runs a stem of convolution, ReLU and 3x3 max pooling in half precision: its layers one by one here; a session takes BATCHWISE_STEM_POOL's choice (the own fused kernel by default).</summary>
    StemPoolChoice StemPools => StemPoolChoice.Off;

    /// <summary>The fused stem's channel splits (<see cref="GraphCompiler.StemChannelSplits"/>: 1, 2, 4, or 0 for auto): 1 here; a session takes BATCHWISE_STEM_SPLITS's (auto by default).</summary>
    int StemSplits => 1;

    /// <summary>Whether an activation after a depthwise convolution is the depthwise kernel's own (<see cref="GraphCompiler.DepthwiseActivationFromEnvironment"/>): yes here; a session takes BATCHWISE_DEPTHWISE_ACTIVATION's.</summary>
    bool DepthwiseActivations => true;

    /// <summary>The split-K kernel's shape: <see cref="SplitKShape.Default"/> here; a session takes BATCHWISE_SPLITK_*'s.</summary>
    SplitKShape SplitKConvShape => SplitKShape.Default;

    /// <summary>The device's streaming multiprocessors (what a grid must fill).</summary>
    int Multiprocessors => 132;

    /// <summary>How GELU's erf form after a matrix product runs: exact in place behind it, in tanh form as its epilogue (fp16), or as exported.</summary>
    GeluChoice Gelu => GeluChoice.Exact;

    /// <summary>Row chunks a product followed by GELU's erf form runs in (<see cref="GraphCompiler.GeluChunksFromEnvironment"/>): 1 (whole) here; a session takes BATCHWISE_GELU_CHUNKS's.</summary>
    int GeluChunks => 1;

    /// <summary>
    /// Whether an fp16 product followed by GELU's erf form runs as the engine's own warpgroup-MMA kernel with the bias and
    /// the GELU in it (<see cref="GraphCompiler.GeluProductFromEnvironment"/>; sm_90 only): no here; a session takes
    /// BATCHWISE_GELU_PRODUCT's.
    /// </summary>
    bool GeluProductOwn => false;

    /// <summary>
    /// The fewest 128 x 256 tiles an fp16 GELU product needs for the own kernel (<see cref="GraphCompiler.GeluProductTilesFromEnvironment"/>):
    /// 0, one a multiprocessor, here; a session takes BATCHWISE_GELU_PRODUCT_TILES's.
    /// </summary>
    int GeluProductMinTiles => 0;

    /// <summary>Who runs recognised attention blocks (<see cref="GraphCompiler.AttentionFromEnvironment"/>): the own kernel here; a session takes BATCHWISE_ATTENTION's.</summary>
    AttentionChoice Attention => AttentionChoice.Own;

    /// <summary>
    /// Whether cuDNN's attention takes a per-key padding mask as sequence lengths (<see cref="GraphCompiler.AttentionMaskFromEnvironment"/>):
    /// true here, as in a session unless BATCHWISE_ATTENTION_MASK=bias.
    /// </summary>
    bool AttentionSequenceLengths => true;

    /// <summary>How many of cuDNN's attention configurations a plan times where tactics are timed (<see cref="GraphCompiler.AttentionConfigsFromEnvironment"/>): 1 (the heuristics' first) here; a session takes BATCHWISE_ATTENTION_CONFIGS's.</summary>
    int AttentionConfigs => 1;

    /// <summary>Query rows a block of the fused attention kernel takes (<see cref="GraphCompiler.AttentionRowsFromEnvironment"/>): 64 here; a session takes BATCHWISE_ATTENTION_ROWS's.</summary>
    int AttentionRows => KernelSource.AttentionRows;

    /// <summary>Generated kernels launch with programmatic dependent launch where the device has it (sm_90): off here; a session takes BATCHWISE_PDL's choice.</summary>
    bool ProgrammaticLaunch => false;
}

/// <summary>
/// Builds an <see cref="ExecutionPlan"/> for concrete input shapes: shapes are computed node by node, everything computable
/// on the host folds to constants (shape subgraphs, constant weights), the rest becomes kernel, cuDNN and cuBLASLt steps,
/// and a static memory plan places the intermediate buffers.
/// </summary>
internal sealed partial class GraphCompiler
{
    private readonly OnnxModel _model;
    private readonly IPlanTarget _target;
    private readonly Dictionary<string, PlanValue> _values = new(StringComparer.Ordinal);
    private readonly List<PlanBuffer> _buffers = [];
    private readonly List<PlanStep> _steps = [];
    private readonly Dictionary<HostTensor, int> _constantBuffers = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<OnnxProto.NodeProto> _folded = new(ReferenceEqualityComparer.Instance);
    private readonly GraphFacts _facts;
    private IReadOnlyDictionary<string, List<OnnxProto.NodeProto>> _consumers = new Dictionary<string, List<OnnxProto.NodeProto>>();
    private readonly HashSet<string> _graphOutputs = new(StringComparer.Ordinal);
    private IReadOnlySet<string> _neededOnHost = new HashSet<string>();
    private long _workspace;
    private string _node = string.Empty;

    /// <param name="model">The model.</param>
    /// <param name="target">The device it plans for.</param>
    /// <param name="facts">What the graph alone says (a session's, computed once for all its plans); null: read here.</param>
    public GraphCompiler(OnnxModel model, IPlanTarget target, GraphFacts? facts = null)
    {
        _model = model;
        _target = target;
        _facts = facts ?? new GraphFacts(model, target.ConcurrentBranches);
    }

    /// <summary>Graph inputs whose values the plan needs on the host (they become part of the plan's cache key).</summary>
    public static HashSet<string> HostValueInputs(OnnxModel model)
    {
        var need = NeededOnHost(model);
        var graphInputs = model.Inputs.Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        need.IntersectWith(graphInputs);
        return need;
    }

    /// <summary>
    /// Every value whose elements the plan needs on the host: the host-valued inputs of each operator (its registry
    /// record says which: Reshape's shape, Slice's starts, Pad's pads...) and, transitively, whatever computes them
    /// (operators that read only shapes, such as Shape, stop the walk).
    /// </summary>
    internal static HashSet<string> NeededOnHost(OnnxModel model)
    {
        var need = new HashSet<string>(StringComparer.Ordinal);
        var nodes = model.Graph.Node;
        foreach (var n in nodes)
        {
            var schema = OperatorRegistry.Find(n.Domain, n.OpType, model.OpsetOf(n.Domain));
            foreach (var p in schema?.HostInputsAt(model.OpsetOf(n.Domain)) ?? [])
            {
                if (p < n.Input.Count && n.Input[p].Length > 0)
                {
                    need.Add(n.Input[p]);
                }
            }
        }

        for (var i = nodes.Count - 1; i >= 0; i--)
        {
            var n = nodes[i];
            var readsOnlyShapes = OperatorRegistry.Find(n.Domain, n.OpType, model.OpsetOf(n.Domain))?.ReadsOnlyShapes == true;
            if (!readsOnlyShapes && n.Output.Any(need.Contains))
            {
                foreach (var input in n.Input.Where(x => x.Length > 0))
                {
                    need.Add(input);
                }
            }
        }

        return need;
    }

    /// <summary>
    /// Compiles for the given inputs (their shapes, and their values where <see cref="HostValueInputs"/> needs them). A
    /// graph with data-dependent nodes (NonZero on run-time values) compiles up to the first node whose count is not in
    /// <paramref name="counts"/> and stops there (<see cref="ExecutionPlan.CountBuffer"/>); the plan for the rest is
    /// compiled with the counts read so far and the plan that stopped as <paramref name="parent"/>.
    /// </summary>
    public ExecutionPlan Compile(IReadOnlyList<Tensor> inputs, IReadOnlyDictionary<string, HostTensor> initializers, ISet<string> hostValueInputs, IReadOnlyList<long>? counts = null, ExecutionPlan? parent = null)
    {
        try
        {
            return CompileSteps(inputs, initializers, hostValueInputs, counts, parent);
        }
        catch
        {
            // The library objects of the steps planned so far go now, while the session's handles and context are alive;
            // left to finalizers they would be destroyed after them (cuDNN execution plans then crash the process).
            DisposePlanned();
            throw;
        }
    }

    private void DisposePlanned()
    {
        // Workspace queries still running on the query threads read their steps' descriptors: they finish first.
        foreach (var (_, pending, _) in _pendingConvs)
        {
            try
            {
                pending.Workspace.Wait();
            }
            catch (AggregateException)
            {
                // its failure no longer matters: the plan is given up
            }
        }

        _pendingConvs.Clear();
        foreach (var step in _steps.OfType<IDisposable>())
        {
            step.Dispose();
        }

        DisposeInt8Graphs();
    }

    private ExecutionPlan CompileSteps(IReadOnlyList<Tensor> inputs, IReadOnlyDictionary<string, HostTensor> initializers, ISet<string> hostValueInputs, IReadOnlyList<long>? counts, ExecutionPlan? parent)
    {
        _counts = counts ?? [];
        (_neededOnHost, _consumers) = (_facts.NeededOnHost, _facts.Consumers);

        // Graph outputs are known before the inputs enter: an input's entry asks whether what reads it is one.
        _graphOutputs.UnionWith(_model.Graph.Output.Select(o => o.Name));
        _stemInputs.Clear();
        _quantizedStems.Clear();
        var specs = _model.Inputs;
        var inputBuffers = new int[specs.Count];
        for (var i = 0; i < specs.Count; i++)
        {
            var t = inputs[i];
            if (t.ElementType != specs[i].ElementType)
            {
                throw new BatchwiseException($"Input '{specs[i].Name}' must be {specs[i].ElementType.ShortName()}, got {t.ElementType.ShortName()}", "Pass tensors of the model's input types.");
            }

            if (hostValueInputs.Contains(specs[i].Name))
            {
                _values[specs[i].Name] = new PlanValue(t.ElementType, t.Shape, HostTensor.FromTensor(t));
                inputBuffers[i] = -1;
            }
            else
            {
                var b = NewBuffer(t.ElementCount * t.ElementType.SizeOf(), "input " + specs[i].Name);
                b.WholeRun = true;
                _node = "input " + specs[i].Name;
                var raw = new PlanValue(t.ElementType, t.Shape, null, b.Id);
                if (QuantizedStemPool(specs[i].Name, t.Shape, t.ElementType, initializers) is { } stem)
                {
                    // input -> QuantizeLinear -> DequantizeLinear -> a stem the fused kernel takes, writing int8 (StemPool.cs).
                    var dq = stem.Match.InputDequantize;
                    _values[dq.Output[0]] = raw;
                    _stemInputs[raw] = StemChannels(dq.Output[0], t.Shape);
                    _quantizedStems[raw] = stem;
                    _folded.Add(stem.Match.InputQuantize);
                    _folded.Add(dq);
                }
                else if (QuantizedStemInput(specs[i].Name, t.Shape, initializers) is { } q)
                {
                    // input -> QuantizeLinear -> DequantizeLinear -> convolutions: the pair's rounding in the entry kernel.
                    _values[q.Dequantize.Output[0]] = EnterInput(raw, q.PadTo, q.Rounding);
                    _folded.Add(q.Quantize);
                    _folded.Add(q.Dequantize);
                }
                else if (FeedsStemPool(specs[i].Name, t.Shape, t.ElementType))
                {
                    // Read as given by the fused stem kernel (StemPool.cs): no entry kernel, no converted copy.
                    _values[specs[i].Name] = raw;
                    _stemInputs[raw] = StemChannels(specs[i].Name, t.Shape);
                }
                else
                {
                    _values[specs[i].Name] = EnterInput(raw, StemChannels(specs[i].Name, t.Shape));
                }

                inputBuffers[i] = b.Id;
            }
        }

        foreach (var (name, value) in initializers)
        {
            _values.TryAdd(name, new PlanValue(value.Type, value.Shape, value));
        }

        for (_nodeIndex = 0; _nodeIndex < _facts.Nodes.Count && !StoppedAtSync; _nodeIndex++)
        {
            var node = _facts.Nodes[_nodeIndex];
            if (!_folded.Contains(node))
            {
                PlanNode(node);
            }
        }

        var outputs = new List<PlanOutput>();
        var declared = _model.Outputs.ToDictionary(o => o.Name, o => o.ElementType, StringComparer.Ordinal);
        foreach (var o in StoppedAtSync ? [] : _model.Graph.Output)
        {
            _node = "output " + o.Name;
            var v = LeaveOutput(_values[o.Name], declared.TryGetValue(o.Name, out var t) ? t : _values[o.Name].Type);
            if (v.Constant is null)
            {
                _buffers[v.Buffer].WholeRun = true;
            }

            outputs.Add(new PlanOutput(v.Type, v.Shape, v.Constant is null ? v.Buffer : -1, v.Constant));
        }

        foreach (var b in _buffers.Where(b => b.WholeRun))
        {
            b.FirstStep = 0;
            b.LastStep = Math.Max(_steps.Count, 1);
        }

        ResolvePendingConvolutions();
        var lanes = parent is null && !StoppedAtSync && _target.ConcurrentBranches ? StepLanes.Plan(_steps, _buffers) : null;
        lanes?.ExtendLifetimes(_steps, _buffers);
        var memory = PlaceBuffers(parent);
        return new ExecutionPlan(_steps, _buffers, inputBuffers, outputs, memory, _workspace)
        {
            Lanes = lanes,
            FirstStep = parent?.Steps.Count ?? 0,
            CountBuffer = _countBuffer,
            Counts = [.. _counts.Take(_countsUsed)],
            SyncNodes = [.. _syncNodes],
            Int8Layers = Int8Decisions,
            ProgrammaticLaunch = _target.ProgrammaticLaunch && _target.ComputeCapability >= 90,
        };
    }

    /// <summary>How steps and decisions name a node: its op type and name, or its first output where it has no name.</summary>
    private static string NodeLabel(OnnxProto.NodeProto node) =>
        string.IsNullOrEmpty(node.Name) ? $"{node.OpType} (output '{node.Output.FirstOrDefault()}')" : $"{node.OpType} '{node.Name}'";

    /// <summary>Plans one node: folds it to constants where the host can compute it, else lowers it to steps.</summary>
    private void PlanNode(OnnxProto.NodeProto node)
    {
        _node = NodeLabel(node);
        var ins = node.Input.Select(n => n.Length == 0 ? null : _values[n]).ToArray();
        try
        {
            // A node over session constants alone (a Cast of fp16 weights, a Reshape of an initializer) folds once per session.
            var needed = node.Output.Any(_neededOnHost.Contains);
            var constants = ins.Select(v => v?.Constant).ToArray();
            var folded = ins.All(v => v is null || v.Constant is { IsInitializer: true }) && node.OpType is not ("Shape" or "Size")
                ? _target.Derive("fold:" + node.Output.FirstOrDefault() + (needed ? "|needed" : string.Empty), constants, () => HostEvaluator.TryEvaluate(node, ins, _model.Opset, needed) ?? [])
                : HostEvaluator.TryEvaluate(node, ins, _model.Opset, needed);
            if (folded is { Length: > 0 })
            {
                for (var i = 0; i < folded.Length && i < node.Output.Count; i++)
                {
                    _values[node.Output[i]] = new PlanValue(folded[i].Type, folded[i].Shape, folded[i]);
                }

                return;
            }

            Lower(node, ins, new NodeAttributes(node));
        }
        catch (BatchwiseException e) when (e is not CudaException && !e.Message.Contains(_node, StringComparison.Ordinal))
        {
            throw new BatchwiseException($"{_node}: {e.Message}", e.Hint, e);
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentException or InvalidOperationException or OverflowException or KeyNotFoundException or NullReferenceException)
        {
            throw new BatchwiseException($"{_node}: cannot plan it for input shapes {string.Join(", ", ins.Select(v => v is null ? "-" : Tensor.ShapeText(v.Shape)))} ({e.Message})", "Check the model with onnx.checker; run with --verbose for the stack.", e);
        }
    }

    private PlanBuffer NewBuffer(long bytes, string label, HostTensor? constant = null, ElementType storage = ElementType.Float)
    {
        var b = new PlanBuffer(_buffers.Count, bytes, label, constant) { StorageType = storage };
        _buffers.Add(b);
        return b;
    }

    /// <summary>A constant bias of <paramref name="n"/> zeros, for a call that takes one where the model has none (one per width, shared).</summary>
    private PlanValue ZeroBias(long n) => new(ElementType.Float, [n], _target.Derive($"zeros:float:{n}", [], () => HostTensor.Create(ElementType.Float, [n], _ => 0)));

    /// <summary>The device buffer holding a value (constants are uploaded once per plan or session).</summary>
    private int Dev(PlanValue v)
    {
        if (v.Constant is null)
        {
            return Materialize(v).Buffer;
        }

        if (!_constantBuffers.TryGetValue(v.Constant, out var id))
        {
            id = NewBuffer(v.Constant.Count * St(v.Constant.Type).SizeOf(), "constant", v.Constant, St(v.Constant.Type)).Id;
            _constantBuffers[v.Constant] = id;
        }

        return id;
    }

    /// <summary>A new arena buffer for a node output.</summary>
    private PlanValue Output(OnnxProto.NodeProto node, int index, ElementType type, long[] shape, bool nhwc = false) => Output(node.Output[index], type, shape, nhwc);

    private PlanValue Output(string name, ElementType type, long[] shape, bool nhwc = false)
    {
        var v = NewValue(type, shape, nhwc, name);
        _values[name] = v;
        return v;
    }

    /// <summary>A node's output stored as <paramref name="storage"/> itself, not as the plan's precision would store its type (a float32 graph output written by the kernel that computes it in a half-precision plan).</summary>
    private PlanValue StoredOutput(string name, ElementType storage, long[] shape)
    {
        var b = NewBuffer(Math.Max(1, Tensor.ElementCountOf(shape)) * storage.SizeOf(), name);
        var v = new PlanValue(storage, shape, null, b.Id);
        _values[name] = v;
        return v;
    }

    private PlanValue Temp(ElementType type, long[] shape, bool nhwc = false) => NewValue(type, shape, nhwc, "temp for " + _node);

    private void Alias(OnnxProto.NodeProto node, int index, PlanValue source, long[] shape) => _values[node.Output[index]] = View(source, shape);

    /// <summary>The value read at another shape of the same element count (no copy; an NCHW copy first for a channels-last value whose shape changes).</summary>
    private PlanValue View(PlanValue source, long[] shape)
    {
        if (Tensor.ElementCountOf(shape) != source.Count)
        {
            throw new BatchwiseException($"cannot view {Tensor.ShapeText(source.Shape)} as {Tensor.ShapeText(shape)}", "Check the model's shapes.");
        }

        // A strided view stays one where the new shape can be read through strides (merging or splitting axes whose
        // elements are evenly spaced, adding or dropping axes of 1); otherwise it is copied first.
        if (source.ViewStrides is { } strides && Restride(source.Shape, strides, shape) is { } restrided)
        {
            return StridedView(source, shape, restrided, source.ViewOffset);
        }

        source = Materialize(source);
        if (source.Nhwc && !shape.SequenceEqual(source.Shape))
        {
            source = Nchw(source);
        }

        // A view of a session constant (a bias seen as [C, 1, 1]) is a session constant too: uploaded once, not per plan.
        var constant = source.Constant;
        return constant is not null
            ? new PlanValue(source.Type, shape, _target.Derive("view:" + string.Join('x', shape), [constant], () => constant.WithShape(shape)))
            : new PlanValue(source.Type, shape, null, source.Buffer) { Nhwc = source.Nhwc };
    }

    /// <summary>
    /// Steps set aside, by their output buffer, for a later kernel that computes their result itself: projection shortcuts
    /// for the residual block end (int8: Int8OwnConvolution.cs; half precision: SplitKConvolution.cs), embedding gathers
    /// for the LayerNorm that reads the table rows itself (Normalization.cs); <see cref="Emit"/> emits one as planned where
    /// another step reads that buffer first, and one nothing reads is never emitted.
    /// </summary>
    private readonly Dictionary<int, DeferredStep> _deferredSteps = [];

    /// <summary>A set-aside step's kernel as planned (what a kernel that takes it over needs is in the derived record).</summary>
    private abstract record DeferredStep(KernelStep Step);

    private void Emit(PlanStep step)
    {
        // A step set aside (a projection shortcut for its block end's kernel, an embedding gather) is emitted here after
        // all, as planned, once a step reads its output: the kernel it was set aside for did not take it.
        if (_deferredSteps.Count > 0)
        {
            foreach (var id in step.Buffers)
            {
                if (id >= 0 && _deferredSteps.Remove(id, out var deferred))
                {
                    Emit(deferred.Step);
                }
            }
        }

        var index = _steps.Count;
        foreach (var id in step.Buffers.Where(b => b >= 0))
        {
            var b = _buffers[id];
            b.FirstStep = Math.Min(b.FirstStep, index);
            b.LastStep = Math.Max(b.LastStep, index);
        }

        _steps.Add(step);
    }

    private void Kernel(KernelCode code, long threads, params int[] buffers) =>
        Emit(new KernelStep(_node, code, Math.Max(1, threads), KernelSource.BlockSize, buffers));

    private void WarpKernel(KernelCode code, long rows, params int[] buffers) =>
        Emit(new KernelStep(_node, code, Math.Max(1, rows) * 32, KernelSource.BlockSize, buffers));

    private void ViewCopy(PlanValue src, long[] shape, long[] srcStrides, long srcBase, PlanValue dst, long[] dstStrides, long dstBase)
    {
        if (Tensor.ElementCountOf(shape) == 0)
        {
            return;
        }

        if (srcBase == 0 && dstBase == 0 && KernelSource.BatchedTranspose(shape, srcStrides, dstStrides) is var (batch, rows, cols))
        {
            Transpose(src, dst, batch, rows, cols); // through shared-memory tiles: whole lines read and written
            return;
        }

        var size = St(src).SizeOf();
        Kernel(KernelSource.ViewCopy(size, shape, srcStrides, srcBase, dstStrides, dstBase), KernelSource.ViewCopyThreads(size, shape, srcStrides, srcBase, dstStrides, dstBase), Dev(dst), Dev(src));
    }

    internal void ReserveWorkspace(long bytes) => _workspace = Math.Max(_workspace, bytes);

    /// <summary>Seconds spent asking cuDNN and cuBLASLt for algorithms (and creating their planning handles) while compiling.</summary>
    public double LibrarySeconds { get; private set; }

    /// <summary>
    /// Finer library spans, seconds by name: cuDNN descriptors set up, heuristics asked, workspace sizes asked (for a
    /// new choice, or to confirm a stored one), cuBLASLt heuristics. Descriptors are part of the graph phase, the rest of
    /// <see cref="LibrarySeconds"/>.
    /// </summary>
    public IReadOnlyDictionary<string, double> LibraryDetails => _libraryDetails;

    private readonly Dictionary<string, double> _libraryDetails = new(StringComparer.Ordinal);

    /// <summary>Adds the time since <paramref name="started"/> (a Stopwatch timestamp) to library span <paramref name="name"/>.</summary>
    private void AddLibraryDetail(string name, long started) =>
        _libraryDetails[name] = _libraryDetails.GetValueOrDefault(name) + System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;

    /// <summary>Runs <paramref name="query"/>, adding its time to library span <paramref name="name"/>.</summary>
    private T TimedLibrary<T>(string name, Func<T> query)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            return query();
        }
        finally
        {
            AddLibraryDetail(name, started);
        }
    }
}

/// <summary>
/// What a plan build reads from the graph alone, whatever the shapes: the values needed on the host and each value's
/// consumers. A session reads them once and shares them with every plan it builds (a plan for a new shape is built in
/// milliseconds; walking the graph for them was part of each).
/// </summary>
internal sealed class GraphFacts
{
    public GraphFacts(OnnxModel model, bool shortcutsFirst = false)
    {
        NeededOnHost = GraphCompiler.NeededOnHost(model);
        var consumers = new Dictionary<string, List<OnnxProto.NodeProto>>(StringComparer.Ordinal);
        var producers = new Dictionary<string, OnnxProto.NodeProto>(StringComparer.Ordinal);
        foreach (var node in model.Graph.Node)
        {
            foreach (var output in node.Output.Where(o => o.Length > 0))
            {
                producers.TryAdd(output, node);
            }

            foreach (var input in node.Input.Where(i => i.Length > 0))
            {
                if (!consumers.TryGetValue(input, out var list))
                {
                    consumers[input] = list = [];
                }

                list.Add(node);
            }
        }

        Consumers = consumers;
        Producers = producers;
        Nodes = shortcutsFirst ? BranchOrder.ShortcutsFirst(model.Graph, consumers, producers) : model.Graph.Node;
    }

    /// <summary>The node that computes each value (the first, as a valid graph has one; read only, shared like <see cref="Consumers"/>).</summary>
    public IReadOnlyDictionary<string, OnnxProto.NodeProto> Producers { get; }

    /// <summary>The nodes in the order plans lower them: the graph's, or with residual shortcuts first (<see cref="BranchOrder"/>).</summary>
    public IReadOnlyList<OnnxProto.NodeProto> Nodes { get; }

    /// <summary>Every value whose elements a plan needs on the host (<see cref="GraphCompiler.NeededOnHost"/>).</summary>
    public IReadOnlySet<string> NeededOnHost { get; }

    /// <summary>The nodes that read each value, in graph order (read only: shared by plans built on several threads).</summary>
    public IReadOnlyDictionary<string, List<OnnxProto.NodeProto>> Consumers { get; }
}
