using System.Runtime.InteropServices;
using Batchwise.Cuda.Interop;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>A tensor during planning: type, concrete shape, its value when known on the host, and its device buffer.</summary>
internal sealed class PlanValue
{
    public PlanValue(ElementType type, long[] shape, HostTensor? constant = null, int buffer = -1)
    {
        Type = type;
        Shape = shape;
        Constant = constant;
        Buffer = buffer;
    }

    public ElementType Type { get; }

    public long[] Shape { get; }

    public HostTensor? Constant { get; }

    public int Buffer { get; set; }

    /// <summary>Stored channels-last: a rank-4 value of logical shape [N, C, H, W] laid out as [N, H, W, C].</summary>
    public bool Nhwc { get; init; }

    /// <summary>Stored channels-last with zero channels up to this count (a network input padded for its first convolution), else 0.</summary>
    public long PaddedChannels { get; init; }

    /// <summary>Not computed yet: an elementwise expression over other values, fused into whatever consumes it.</summary>
    public PendingElementwise? Pending { get; set; }

    /// <summary>
    /// For a convolution's pending result (raw output plus its per-channel bias): the raw output and the bias constant
    /// [C], so a convolution or product taking it as its residual reads the raw output and adds the bias to its own.
    /// </summary>
    public (PlanValue Raw, PlanValue Bias)? RawPlusBias { get; set; }

    /// <summary>
    /// A strided view of <see cref="Buffer"/> not copied yet (a Transpose, Split, Squeeze or Gather of an attention
    /// operand): element (i0, i1, ...) at <see cref="ViewOffset"/> + sum(i_d * ViewStrides[d]). The fused attention
    /// reads it as it is; any other consumer gets it copied row-major first (<c>Materialize</c>). Null for a row-major value.
    /// </summary>
    public long[]? ViewStrides { get; set; }

    /// <summary>The element offset of a strided view (<see cref="ViewStrides"/>) in its buffer.</summary>
    public long ViewOffset { get; set; }

    public long Count => Engines.Tensor.ElementCountOf(Shape);

    public long Bytes => Count * Type.SizeOf();
}

/// <summary>
/// An elementwise computation not yet written to memory: statements in the compute type over leaf values (tokens
/// <c>@id@</c>, ids from the compiler) ending in <see cref="Result"/>; consumers that are elementwise too extend it, any
/// other consumer makes the compiler emit it as one kernel.
/// </summary>
internal sealed class PendingElementwise
{
    public PendingElementwise(List<(string Temp, string Code)> statements, string result, List<PlanValue> leaves)
    {
        Statements = statements;
        Result = result;
        Leaves = leaves;
    }

    public List<(string Temp, string Code)> Statements { get; }

    public string Result { get; }

    public List<PlanValue> Leaves { get; }
}

/// <summary>A device buffer of the plan: in the arena (placed by the memory plan) or a constant uploaded once.</summary>
internal sealed class PlanBuffer
{
    public PlanBuffer(int id, long bytes, string label, HostTensor? constant = null)
    {
        Id = id;
        Bytes = bytes;
        Label = label;
        Constant = constant;
    }

    public int Id { get; }

    public long Bytes { get; }

    public string Label { get; }

    public HostTensor? Constant { get; }

    /// <summary>The element type a constant is uploaded as (float32 weights become float16 in a half-precision plan).</summary>
    public ElementType StorageType { get; init; }

    public int FirstStep { get; set; } = int.MaxValue;

    public int LastStep { get; set; } = -1;

    /// <summary>Inputs and outputs live for the whole run (inputs are bound once and reused run after run).</summary>
    public bool WholeRun { get; set; }

    public long Offset { get; set; }

    public bool IsArena => Constant is null;
}

/// <summary>One thing a plan does on the stream.</summary>
internal abstract class PlanStep
{
    protected PlanStep(string node, int[] buffers)
    {
        Node = node;
        Buffers = buffers;
    }

    /// <summary>The ONNX node (op and name) it comes from, for errors and profiles.</summary>
    public string Node { get; }

    /// <summary>Every buffer it reads or writes (-1 for none).</summary>
    public virtual int[] Buffers { get; }

    public abstract void Enqueue(ExecutionContext context, int index);
}

/// <summary>
/// A cuDNN convolution planned without the library (<see cref="IPlanTarget.PlansConvolutionsWithoutLibrary"/>): its
/// buffers (input, filter, bias or -1, output, residual or -1) and problem, for plan tests on machines without a GPU. It
/// cannot be enqueued.
/// </summary>
internal sealed class ConvProblemStep(string node, int[] buffers, ConvShapeKey problem) : PlanStep(node, buffers)
{
    public ConvShapeKey Problem => problem;

    public override void Enqueue(ExecutionContext context, int index) =>
        throw new InvalidOperationException($"{Node}: a convolution planned without cuDNN cannot run");
}

/// <summary>
/// A launch of a generated kernel: its parameters are device pointers to plan buffers, then the argument block with the
/// sizes of this plan (the source is shared by every plan of the same operator signature).
/// </summary>
internal sealed class KernelStep : PlanStep
{
    public KernelStep(string node, Kernels.KernelCode code, long threads, int block, int[] buffers)
        : base(node, buffers)
    {
        Source = code.Source;
        Args = code.Args;
        SharedBytes = code.SharedBytes;
        TensorMaps = code.TensorMaps ?? [];
        Block = block;
        Grid = checked((uint)Math.Max(1, (threads + block - 1) / block));
        WaitsForPrerequisite = code.Source.Contains(Kernels.KernelWriter.PdlEnterCall, StringComparison.Ordinal);
    }

    /// <summary>
    /// The kernel waits for the kernel before it (<c>bw_pdl_enter</c>, as <see cref="Kernels.KernelWriter"/> writes every
    /// kernel), so it may be launched with programmatic dependent launch; one that does not is always launched after the
    /// kernel before it has ended.
    /// </summary>
    public bool WaitsForPrerequisite { get; }

    public string Source { get; }

    /// <summary>The argument block passed by value after the pointers and tensor maps.</summary>
    public byte[] Args { get; }

    /// <summary>TMA tensor maps passed by value after the pointers (<see cref="Kernels.HalfTensorMap"/>): each context encodes them over its own buffers.</summary>
    public IReadOnlyList<Kernels.HalfTensorMap> TensorMaps { get; }

    public int Block { get; }

    /// <summary>Dynamic shared memory of a block (0: the kernel's shared memory, if any, is static).</summary>
    public int SharedBytes { get; }

    public uint Grid { get; }

    public string FunctionName { get; set; } = string.Empty;

    public IntPtr Function { get; set; }

    /// <summary>Whether a plan that launches programmatically (<see cref="ExecutionPlan.ProgrammaticLaunch"/>) launches this step so.</summary>
    public bool LaunchesProgrammatically(bool planProgrammatic) => planProgrammatic && WaitsForPrerequisite;

    public override unsafe void Enqueue(ExecutionContext context, int index) =>
        CudaDriver.Launch(Function, Grid, (uint)Block, (uint)SharedBytes, context.Stream.Handle, context.KernelParams(index), FunctionName + " for " + Node, LaunchesProgrammatically(context.ProgrammaticLaunch));
}

/// <summary>A convolution through cuDNN, with the bias added by cudnnAddTensor.</summary>
internal sealed class ConvStep : PlanStep, IDisposable
{
    public ConvStep(string node, int x, int w, int bias, int y, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, CudnnTensorDescriptor? biasDesc, int algo, long workspaceBytes)
        : base(node, [x, w, bias, y])
    {
        (XDesc, WDesc, ConvDesc, YDesc, BiasDesc, Algo, WorkspaceBytes) = (xDesc, wDesc, convDesc, yDesc, biasDesc, algo, workspaceBytes);
    }

    public CudnnTensorDescriptor XDesc { get; }

    public CudnnFilterDescriptor WDesc { get; }

    public CudnnConvolutionDescriptor ConvDesc { get; }

    public CudnnTensorDescriptor YDesc { get; }

    public CudnnTensorDescriptor? BiasDesc { get; }

    public int Algo { get; private set; }

    public long WorkspaceBytes { get; private set; }

    /// <summary>The algorithm and workspace once confirmed (a choice whose workspace query ran beside the plan's lowering).</summary>
    internal void Resolve(int algo, long workspaceBytes) => (Algo, WorkspaceBytes) = (algo, workspaceBytes);

    /// <summary>With an activation: one fused cudnnConvolutionBiasActivationForward (bias required).</summary>
    public CudnnActivationDescriptor? Activation { get; init; }

    /// <summary>The buffer added before the activation (a residual connection), or -1.</summary>
    public int Residual { get; init; } = -1;

    /// <summary>Its choice's key in the session's <see cref="TacticStore"/> (a saved engine's early warm-up names the problems it called by it), or null.</summary>
    public string? ChoiceKey { get; init; }

    public override int[] Buffers => Residual < 0 ? base.Buffers : [.. base.Buffers, Residual];

    public override void Enqueue(ExecutionContext context, int index) => Call(context, context.Cudnn, context.Workspace, context.Pointer(base.Buffers[3]));

    /// <summary>
    /// The cuDNN call(s) on <paramref name="handle"/>'s stream with <paramref name="workspace"/> (at least
    /// <see cref="WorkspaceBytes"/>), writing the output to <paramref name="y"/>.
    /// </summary>
    public void Call(ExecutionContext context, CudnnHandle handle, ulong workspace, ulong y)
    {
        if (Activation is not null)
        {
            var z = Residual < 0 ? y : context.Pointer(Residual);
            Cudnn.ConvolutionBiasActivationForward(handle, XDesc, context.Pointer(base.Buffers[0]), WDesc, context.Pointer(base.Buffers[1]), ConvDesc, Algo, workspace, WorkspaceBytes, Residual < 0 ? 0f : 1f, YDesc, z, BiasDesc!, context.Pointer(base.Buffers[2]), Activation, YDesc, y);
            return;
        }

        Cudnn.ConvolutionForward(handle, XDesc, context.Pointer(Buffers[0]), WDesc, context.Pointer(Buffers[1]), ConvDesc, Algo, workspace, WorkspaceBytes, 0f, YDesc, y);
        if (BiasDesc is not null)
        {
            Cudnn.AddTensor(handle, BiasDesc, context.Pointer(Buffers[2]), YDesc, y);
        }
    }

    public void Dispose()
    {
        Activation?.Dispose();
        XDesc.Dispose();
        WDesc.Dispose();
        ConvDesc.Dispose();
        YDesc.Dispose();
        BiasDesc?.Dispose();
    }
}

/// <summary>
/// A matrix product as planned, row-major: Y[M, N] = alpha op(A) op(B) + beta C + bias (bias one per column, C of Y's
/// shape: Y itself unless the step names its own), then GELU's tanh form where <paramref name="TanhGelu"/> or max(0, .) where <paramref name="Relu"/>,
/// <paramref name="Batch"/> times at the given strides. What a reference runner needs; the cuBLASLt descriptors say the
/// same thing column-major.
/// </summary>
internal sealed record MatmulProblem(ElementType Type, int M, int N, int K, bool TransA, bool TransB, long Lda, long Ldb, int Batch, long StrideA, long StrideB, float Alpha, float Beta, bool TanhGelu = false, bool Relu = false);

/// <summary>
/// A cuBLASLt matrix product (<see cref="MatmulProblem"/>): buffers B, A, Y (cuBLASLt's A, B and D: row-major Y^T =
/// B^T A^T), then the bias vector added in the epilogue and the C read with beta (-1 where there is none). Planned
/// without a library (<see cref="IPlanTarget.PlansMatmulsWithoutLibrary"/>) it has no descriptors and cannot be enqueued.
/// </summary>
internal sealed class MatmulStep : PlanStep, IDisposable
{
    private readonly IntPtr _algo;
    private readonly Lock _biasLock = new();
    private ulong _bias;

    public unsafe MatmulStep(string node, MatmulProblem problem, int a, int b, int d, int bias, int c, CublasLtMatmulDescriptor? desc, CublasLtMatrixLayout? aLayout, CublasLtMatrixLayout? bLayout, CublasLtMatrixLayout? dLayout, CublasLt.HeuristicResult algo)
        : base(node, [a, b, d, bias, c])
    {
        (Problem, Desc, ALayout, BLayout, DLayout) = (problem, desc, aLayout, bLayout, dLayout);
        _algo = (IntPtr)NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
        *(CublasLt.HeuristicResult*)_algo = algo;
        WorkspaceBytes = (long)algo.WorkspaceSize;
    }

    public MatmulProblem Problem { get; }

    public CublasLtMatmulDescriptor? Desc { get; }

    public CublasLtMatrixLayout? ALayout { get; }

    public CublasLtMatrixLayout? BLayout { get; }

    public CublasLtMatrixLayout? DLayout { get; }

    public float Alpha => Problem.Alpha;

    public float Beta => Problem.Beta;

    public long WorkspaceBytes { get; }

    /// <summary>
    /// Bytes into the activations' buffer (Buffers[1]) and into the output's (Buffers[2], and C's where it is another
    /// buffer) where this product's rows start: 0 for a whole product; a row chunk's offset for one of the chunks a
    /// product is split into (<see cref="GraphCompiler"/>'s BATCHWISE_GELU_CHUNKS).
    /// </summary>
    public (long Activations, long Output) RowOffsets { get; init; }

    public override unsafe void Enqueue(ExecutionContext context, int index)
    {
        if (Desc is null || ALayout is null || BLayout is null || DLayout is null)
        {
            throw new InvalidOperationException($"{Node}: this matrix product was planned without cuBLASLt and cannot run on a GPU");
        }

        if (Buffers[3] >= 0)
        {
            // The bias is a constant buffer (one address for every context of the plan): the descriptor learns it once.
            var bias = context.Pointer(Buffers[3]);
            lock (_biasLock)
            {
                if (_bias != bias)
                {
                    CublasLt.SetBias(Desc, bias);
                    _bias = bias;
                }
            }
        }

        var d = context.Pointer(Buffers[2]) + (ulong)RowOffsets.Output;
        var c = Buffers[4] >= 0 ? context.Pointer(Buffers[4]) + (ulong)RowOffsets.Output : d;
        CublasLt.Matmul(context.CublasLt, Desc, Alpha, context.Pointer(Buffers[0]), ALayout, context.Pointer(Buffers[1]) + (ulong)RowOffsets.Activations, BLayout, Beta, c, DLayout, d, DLayout, (CublasLt.HeuristicResult*)_algo, context.Workspace, context.WorkspaceBytes, context.Stream.Handle);
    }

    public unsafe void Dispose()
    {
        Desc?.Dispose();
        ALayout?.Dispose();
        BLayout?.Dispose();
        DLayout?.Dispose();
        NativeMemory.Free((void*)_algo);
    }
}

/// <summary>A graph output: read from a device buffer, or a value that folded to a constant.</summary>
internal sealed record PlanOutput(ElementType Type, long[] Shape, int Buffer, HostTensor? Constant);

/// <summary>
/// What runs for one set of input shapes: the steps in order, the buffers and their memory plan, constants on the device
/// and the compiled module. Shared by every execution context of that shape; each context brings its own arena.
/// </summary>
internal sealed class ExecutionPlan : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public ExecutionPlan(IReadOnlyList<PlanStep> steps, IReadOnlyList<PlanBuffer> buffers, int[] inputBuffers, IReadOnlyList<PlanOutput> outputs, MemoryPlan memory, long workspaceBytes)
    {
        Steps = steps;
        Buffers = buffers;
        InputBuffers = inputBuffers;
        Outputs = outputs;
        Memory = memory;
        WorkspaceBytes = workspaceBytes;
    }

    public IReadOnlyList<PlanStep> Steps { get; }

    public IReadOnlyList<PlanBuffer> Buffers { get; }

    /// <summary>The arena buffer of each graph input, or -1 where its value was folded into the plan or is unused.</summary>
    public int[] InputBuffers { get; }

    public IReadOnlyList<PlanOutput> Outputs { get; }

    public MemoryPlan Memory { get; }

    public long WorkspaceBytes { get; }

    /// <summary>Built for one run (past the session's bound on kept plans): the run disposes it, and the plans after it are built for that run too.</summary>
    public bool Transient { get; set; }

    /// <summary>The session's first plan: its first run makes cuDNN's first calls on several threads first (<see cref="ExecutionContext.ConvWarmThreads"/>).</summary>
    public bool WarmConvolutionsFirst { get; set; }

    /// <summary>The session's early warm-up of a saved engine's convolutions (<see cref="ConvWarmUp"/>): a context's first run waits for it; null where none runs.</summary>
    public ConvWarmUp? EarlyWarmUp { get; set; }

    /// <summary>The session's key of the plan (input shapes, host values, counts), for build records.</summary>
    public string Key { get; set; } = string.Empty;

    /// <summary>
    /// The first step this plan runs: 0, or for the plan of the rest after a data-dependent node, the number of steps
    /// its parent ran (the same steps, on the same arena offsets) before the host read the count.
    /// </summary>
    public int FirstStep { get; init; }

    /// <summary>
    /// The buffer holding the int64 count of a data-dependent node (NonZero) this plan stops at, or -1 when it runs to
    /// the graph's outputs. A plan that stops has no outputs: the host reads the count (a synchronisation) and runs
    /// the plan for the rest (<see cref="Continuations"/>).
    /// </summary>
    public int CountBuffer { get; init; } = -1;

    /// <summary>True when the plan stops at a data-dependent node's count.</summary>
    public bool StopsForCount => CountBuffer >= 0;

    /// <summary>The counts of the data-dependent nodes this plan was built for, in graph order.</summary>
    public IReadOnlyList<long> Counts { get; init; } = [];

    /// <summary>The data-dependent nodes this plan synchronises at (its own and its parents'), for explain and verbose output.</summary>
    public IReadOnlyList<string> SyncNodes { get; init; } = [];

    /// <summary>Steps on a second stream beside the main one (independent branches), or null where every step runs on one.</summary>
    public StepLanes? Lanes { get; init; }

    /// <summary>
    /// Generated kernels launch with programmatic dependent launch (BATCHWISE_PDL=on, sm_90): each may be scheduled while
    /// the kernel before it finishes and waits for it in its first statement (<see cref="Kernels.KernelWriter.PdlEnter"/>).
    /// </summary>
    public bool ProgrammaticLaunch { get; init; }

    /// <summary>Each Conv of a QDQ model by node: "int8" (tensor cores), or why it runs in float.</summary>
    public IReadOnlyDictionary<string, string> Int8Layers { get; init; } = new Dictionary<string, string>();

    /// <summary>Plans for the rest of the graph by the count read at <see cref="CountBuffer"/>, built once each (the session bounds how many).</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<long, Lazy<ExecutionPlan>> Continuations { get; } = new();

    /// <summary>Device pointers of constant buffers (by buffer id), shared across contexts.</summary>
    public Dictionary<int, ulong> ConstantPointers { get; } = [];

    /// <summary>Bytes of L2 to set aside for the constants of this plan's CUDA graph (<see cref="L2Persistence"/>); null: none.</summary>
    public long? L2SetAside { get; set; }

    private readonly Lock _l2Gate = new();
    private bool _l2Decided;
    private L2Window? _l2Window;

    /// <summary>
    /// The access-policy window over this plan's constants that its graphs' kernels get where <see cref="L2SetAside"/> asks
    /// (null otherwise): the L2 set aside, the window found and its trace written once, by the first context that asks
    /// (the constants, and so the window, are the same for every context).
    /// </summary>
    public L2Window? ConstantsWindow()
    {
        if (L2SetAside is not { } setAside)
        {
            return null;
        }

        lock (_l2Gate)
        {
            if (!_l2Decided)
            {
                var (given, maxWindow) = CudaDriver.SetAsideL2(setAside);
                _l2Window = L2Persistence.Window([.. Buffers.Where(b => !b.IsArena).Select(b => (ConstantPointers[b.Id], b.Bytes))], given, maxWindow);
                L2Persistence.Report(_l2Window);
                _l2Decided = true;
            }

            return _l2Window;
        }
    }

    /// <summary>The compiled gate kernel (<see cref="Kernels.KernelSource.GateKernel"/>) profiling holds the stream with.</summary>
    public IntPtr Gate { get; set; }

    public bool UsesCudnn => Steps.Any(s => s is ConvStep or ConvTransposeStep or Int8GraphConvStep or CudnnAttentionStep);

    public bool UsesCublasLt => Steps.Any(s => s is MatmulStep or Int8GemmStep);

    public void Own(IDisposable d) => _owned.Add(d);

    public void Dispose()
    {
        foreach (var c in Continuations.Values.Where(c => c.IsValueCreated))
        {
            c.Value.Dispose();
        }

        foreach (var s in Steps.OfType<IDisposable>())
        {
            s.Dispose();
        }

        foreach (var d in _owned)
        {
            d.Dispose();
        }
    }
}

/// <summary>
/// What one execution in flight needs, whatever its plan: a stream, an activation arena and a workspace sized for the
/// largest plan it ran, cuDNN and cuBLASLt handles bound to the stream, and timing events. A session keeps as many
/// slots as runs it has had in flight at once; every plan of the session runs on any slot, so plans share arenas
/// instead of each holding its own.
/// </summary>
internal sealed class ExecutionSlot : IDisposable
{
    private readonly Dictionary<ExecutionPlan, ExecutionContext> _contexts = new(ReferenceEqualityComparer.Instance);
    private DeviceMemory? _arena;
    private DeviceMemory? _workspace;
    private DeviceMemory? _sideWorkspace;

    public ExecutionSlot()
    {
        Stream = CudaDriver.CreateStream();
        Start = CudaDriver.CreateEvent();
        End = CudaDriver.CreateEvent();
    }

    public CudaStream Stream { get; }

    public CudaEvent Start { get; }

    public CudaEvent End { get; }

    public ulong ArenaPointer => _arena?.Pointer ?? 0;

    public long ArenaBytes { get; private set; }

    /// <summary>Counts the times the arena was replaced (by a larger one): what was in it went with it.</summary>
    public int ArenaGeneration { get; private set; }

    public ulong Workspace => _workspace?.Pointer ?? 0;

    public long WorkspaceBytes { get; private set; }

    public CudnnHandle? Cudnn { get; private set; }

    public CublasLtHandle? CublasLt { get; private set; }

    /// <summary>The second stream for plans with independent branches (<see cref="StepLanes"/>), made on first use.</summary>
    public CudaStream? SideStream { get; private set; }

    /// <summary>A cuDNN handle bound to <see cref="SideStream"/>, made where a plan with branches uses cuDNN.</summary>
    public CudnnHandle? SideCudnn { get; private set; }

    /// <summary>The side lane's own workspace (its steps run while the main lane's use the other).</summary>
    public ulong SideWorkspace => _sideWorkspace?.Pointer ?? 0;

    public long SideWorkspaceBytes { get; private set; }

    /// <summary>Where the slot's first set-up is timed (the session's first slot: part of the cold start), or null.</summary>
    public Engines.StartupSpans? Spans { get; init; }

    private readonly List<StagingLane> _lanes = [];

    /// <summary>
    /// Held while a run enqueues its work on <see cref="Stream"/> (copies, the plan, its completion event): runs of
    /// several lanes share the stream, and one run's operations must not interleave with another's (the inputs of one
    /// would land in the arena between the other's copies and its kernels), nor another thread enqueue into a CUDA
    /// graph capture.
    /// </summary>
    public Lock Enqueuing { get; } = new();

    /// <summary>
    /// Lane <paramref name="index"/>'s staging memory and completion event (made on first use). Lane 0 is the slot's
    /// own; lanes 1.. are companions for runs queued on the same stream while an earlier run still executes
    /// (<see cref="SlotPool{TSlot}"/>): they share the stream, and so the arena, workspace, library handles and
    /// contexts, whose every use the stream orders.
    /// </summary>
    public StagingLane Lane(int index)
    {
        lock (_lanes)
        {
            while (_lanes.Count <= index)
            {
                _lanes.Add(new StagingLane());
            }

            return _lanes[index];
        }
    }

    /// <summary>The context of <paramref name="plan"/> on this slot, made (and the arena grown) on first use.</summary>
    /// <param name="plan">The plan to run.</param>
    /// <param name="useCudaGraph">Replay the plan as a CUDA graph once captured.</param>
    /// <param name="arenaBytes">At least this much arena (the session's largest plan), so growing happens once.</param>
    /// <param name="keep">Keep the context for the plan's next runs; false for a plan used once (the caller disposes the context).</param>
    public ExecutionContext ContextFor(ExecutionPlan plan, bool useCudaGraph, long arenaBytes, bool keep = true) =>
        TryContextFor(plan, useCudaGraph, arenaBytes, static () => true, keep)!;

    /// <summary>
    /// <see cref="ContextFor"/>, unless the arena or workspace would have to be replaced and <paramref name="mayReplace"/>
    /// (asked under the slot's lock) says no: then null. A lane's run asks "am I the slot's only run?": replacing the
    /// arena frees memory another run's queued work may still use and disposes the contexts (and graphs) another run
    /// holds, so with another lane held the run goes to a slot of its own instead. Serve warms every profile up before
    /// it is ready, so the arena is at its largest by then and this refusal does not happen in practice.
    /// </summary>
    public ExecutionContext? TryContextFor(ExecutionPlan plan, bool useCudaGraph, long arenaBytes, Func<bool> mayReplace, bool keep = true)
    {
        lock (_contexts)
        {
            return ContextLocked(plan, useCudaGraph, arenaBytes, mayReplace, keep);
        }
    }

    private ExecutionContext? ContextLocked(ExecutionPlan plan, bool useCudaGraph, long arenaBytes, Func<bool> mayReplace, bool keep)
    {
        if (keep && _contexts.TryGetValue(plan, out var context))
        {
            return context;
        }

        var needArena = Math.Max(plan.Memory.ArenaBytes, arenaBytes);
        var needSide = plan.Lanes?.SideWorkspaceBytes ?? 0;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        if (needArena > ArenaBytes || plan.WorkspaceBytes > WorkspaceBytes || needSide > SideWorkspaceBytes)
        {
            if (!mayReplace())
            {
                return null;
            }

            // Contexts hold pointers into the old arena (and graphs captured with them): they go with it.
            foreach (var c in _contexts.Values)
            {
                c.Dispose();
            }

            _contexts.Clear();
            if (needArena > ArenaBytes)
            {
                _arena?.Dispose();
                _arena = null;
                _arena = CudaDriver.Allocate(Math.Max(1, needArena));
                ArenaBytes = needArena;
                ArenaGeneration++;
            }

            if (plan.WorkspaceBytes > WorkspaceBytes)
            {
                _workspace?.Dispose();
                _workspace = null;
                _workspace = CudaDriver.Allocate(plan.WorkspaceBytes);
                WorkspaceBytes = plan.WorkspaceBytes;
            }

            if (needSide > SideWorkspaceBytes)
            {
                _sideWorkspace?.Dispose();
                _sideWorkspace = null;
                _sideWorkspace = CudaDriver.Allocate(needSide);
                SideWorkspaceBytes = needSide;
            }
        }

        Spans?.AddOnce("slot_memory", System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        OpenLibraries(plan.UsesCudnn, plan.UsesCublasLt);
        if (plan.Lanes is not null)
        {
            SideStream ??= CudaDriver.CreateStream();
            if (plan.UsesCudnn)
            {
                SideCudnn ??= Interop.Cudnn.Create(SideStream);
            }
        }

        started = System.Diagnostics.Stopwatch.GetTimestamp();
        context = new ExecutionContext(plan, this, useCudaGraph);
        Spans?.AddOnce("slot_context", System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        if (keep)
        {
            _contexts[plan] = context;
        }

        return context;
    }

    /// <summary>Creates the slot's cuDNN and cuBLASLt handles where asked and not made yet.</summary>
    public void OpenLibraries(bool cudnn, bool cublasLt)
    {
        if (cudnn && Cudnn is null)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            Cudnn = Interop.Cudnn.Create(Stream);
            Spans?.AddOnce("slot_cudnn_handle", System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        if (cublasLt && CublasLt is null)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            CublasLt = Interop.CublasLt.Create();
            Spans?.AddOnce("slot_cublaslt_handle", System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    public void Dispose()
    {
        foreach (var c in _contexts.Values)
        {
            c.Dispose();
        }

        _contexts.Clear();
        Cudnn?.Dispose();
        SideCudnn?.Dispose();
        CublasLt?.Dispose();
        foreach (var lane in _lanes)
        {
            lane.Dispose();
        }

        _arena?.Dispose();
        _workspace?.Dispose();
        _sideWorkspace?.Dispose();
        Start.Dispose();
        End.Dispose();
        SideStream?.Dispose();
        Stream.Dispose();
    }
}

/// <summary>One plan on one slot: the kernel parameters (pointers into the slot's arena and each kernel's argument block) and the captured CUDA graph.</summary>
internal sealed unsafe partial class ExecutionContext : IDisposable
{
    private readonly ExecutionPlan _plan;
    private readonly ExecutionSlot _slot;
    private readonly ulong[] _pointers;
    private readonly IntPtr[] _params;
    private readonly IntPtr[] _addresses;
    private readonly bool _useGraph;
    private readonly L2Window? _l2Window;
    private CudaGraphExec? _graph;
    private int _runs;
    private bool _stepsEnqueued;

    // Independent branches (plan.Lanes): the lane the step being enqueued runs on, the events that fork the side lane
    // at a run's start and join it at the end, and one after each step the other lane waits for.
    private int _lane;
    private readonly CudaEvent? _fork;
    private readonly CudaEvent? _join;
    private readonly Dictionary<int, CudaEvent> _signals = [];

    public ExecutionContext(ExecutionPlan plan, ExecutionSlot slot, bool useCudaGraph)
    {
        _plan = plan;
        _slot = slot;
        _useGraph = useCudaGraph;
        _pointers = new ulong[plan.Buffers.Count];
        foreach (var b in plan.Buffers)
        {
            _pointers[b.Id] = b.IsArena ? slot.ArenaPointer + (ulong)b.Offset : plan.ConstantPointers[b.Id];
        }

        _l2Window = useCudaGraph ? plan.ConstantsWindow() : null;

        // Kernel parameters are fixed for the context's life: one block per launch holding the pointer values, the
        // kernel's argument block and the array of addresses cuLaunchKernel reads (what a CUDA graph captures unchanged).
        _params = new IntPtr[plan.Steps.Count];
        _addresses = new IntPtr[plan.Steps.Count];
        for (var i = 0; i < plan.Steps.Count; i++)
        {
            if (plan.Steps[i] is not KernelStep k)
            {
                continue;
            }

            // Layout (64-byte aligned): n pointer values, the step's tensor maps (128 bytes each, encoded over this
            // context's buffers), the argument block, then the n + maps + 1 addresses cuLaunchKernel reads, in the
            // kernel's parameter order.
            var n = k.Buffers.Length;
            var maps = k.TensorMaps.Count;
            var pointerBytes = ((n * 8) + 63) / 64 * 64;
            var args = (k.Args.Length + 7) / 8 * 8;
            var block = (byte*)NativeMemory.AlignedAlloc((nuint)(pointerBytes + (maps * CudaDriver.TensorMapBytes) + args + ((n + maps + 1) * 8)), 64);
            var values = (ulong*)block;
            var mapBlock = block + pointerBytes;
            var argBlock = mapBlock + (maps * CudaDriver.TensorMapBytes);
            var addresses = (void**)(argBlock + args);
            for (var j = 0; j < n; j++)
            {
                values[j] = k.Buffers[j] < 0 ? 0 : _pointers[k.Buffers[j]];
                addresses[j] = &values[j];
            }

            for (var j = 0; j < maps; j++)
            {
                var m = k.TensorMaps[j];
                var map = mapBlock + (j * CudaDriver.TensorMapBytes);
                CudaDriver.EncodeHalfTensorMap(map, values[m.Buffer], m.Rows, m.Columns, m.Columns * 2, m.BoxRows, m.BoxColumns);
                addresses[n + j] = map;
            }

            new Span<byte>(argBlock, args).Clear();
            k.Args.CopyTo(new Span<byte>(argBlock, k.Args.Length));
            addresses[n + maps] = argBlock;
            _addresses[i] = (IntPtr)addresses;
            _params[i] = (IntPtr)block;
        }

        if (plan.Lanes is { } lanes)
        {
            _fork = CudaDriver.CreateEvent(timing: false);
            _join = CudaDriver.CreateEvent(timing: false);
            for (var i = 0; i < lanes.Signals.Length; i++)
            {
                if (lanes.Signals[i])
                {
                    _signals[i] = CudaDriver.CreateEvent(timing: false);
                }
            }
        }
    }

    /// <summary>The stream of the step being enqueued: the slot's, or its side stream for a step of the side lane.</summary>
    public CudaStream Stream => _lane == 0 ? _slot.Stream : _slot.SideStream!;

    /// <summary>The plan's generated kernels launch with programmatic dependent launch (<see cref="ExecutionPlan.ProgrammaticLaunch"/>).</summary>
    public bool ProgrammaticLaunch => _plan.ProgrammaticLaunch;

    public CudnnHandle Cudnn => (_lane == 0 ? _slot.Cudnn : _slot.SideCudnn)!;

    /// <summary>The lane's cuDNN handle, or null where the slot opened none.</summary>
    public CudnnHandle? CudnnOrNull => _lane == 0 ? _slot.Cudnn : _slot.SideCudnn;

    public CublasLtHandle CublasLt => _slot.CublasLt!;

    public ulong Workspace => _lane == 0 ? _slot.Workspace : _slot.SideWorkspace;

    public long WorkspaceBytes => _lane == 0 ? _slot.WorkspaceBytes : _slot.SideWorkspaceBytes;

    public ExecutionPlan Plan => _plan;

    public ulong Pointer(int buffer) => buffer < 0 ? 0 : _pointers[buffer];

    public void** KernelParams(int step) => (void**)_addresses[step];

    /// <summary>Why graph capture was given up for this context, if it was.</summary>
    public string? GraphProblem { get; private set; }

    /// <summary>The access-policy window the graph's kernels get (<see cref="ExecutionPlan.L2SetAside"/>), if any.</summary>
    public L2Window? L2Window => _l2Window;

    /// <summary>True once the plan replays as one CUDA graph.</summary>
    public bool UsesGraph => _graph is not null;

    /// <summary>
    /// Enqueues every step between two events and waits; returns the GPU time in seconds. With CUDA graphs on, the first
    /// run goes step by step (libraries finish their lazy set-up), the second captures the steps and later runs replay them.
    /// </summary>
    public double Run() => RunQueued(1);

    /// <summary>
    /// Enqueues <paramref name="runs"/> runs back to back between two events and waits for the last; returns their GPU
    /// time in seconds (<see cref="Run"/> is one). The graph (captured when due, before the first event) is launched once
    /// a run, so the GPU goes from one run to the next without waiting for the host.
    /// </summary>
    public double RunQueued(int runs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        CaptureIfDue();
        CudaDriver.Record(_slot.Start, Stream);
        var enqueuing = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var i = 0; i < runs; i++)
        {
            EnqueuePlan();
        }

        LastEnqueueSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(enqueuing).TotalSeconds / runs;
        CudaDriver.Record(_slot.End, Stream);
        return CudaDriver.ElapsedSeconds(_slot.Start, _slot.End);
    }

    /// <summary>Host time the last <see cref="Run"/> (a run of the last <see cref="RunQueued"/>) took to enqueue its work (step by step: the libraries' first calls; replayed: one launch).</summary>
    public double LastEnqueueSeconds { get; private set; }

    /// <summary>Host time the CUDA graph's capture and instantiation took (0 until captured).</summary>
    public double CaptureSeconds { get; private set; }

    /// <summary>Captures the CUDA graph when it is due (the second run); before any event of the run is recorded.</summary>
    private void CaptureIfDue()
    {
        if (_useGraph && _graph is null && GraphProblem is null && _runs >= 1)
        {
            var capturing = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                _graph = CudaDriver.Capture(Stream, EnqueueSteps, _l2Window);
                CaptureSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(capturing).TotalSeconds;
            }
            catch (CudaException e)
            {
                GraphProblem = e.Message;
                if (_l2Window is not null)
                {
                    L2Persistence.Report(null, e.Message);
                }
            }
        }
    }

    /// <summary>Enqueues one run of the plan on the slot's stream (capturing the CUDA graph first when it is due), without waiting.</summary>
    public void Enqueue()
    {
        CaptureIfDue();
        EnqueuePlan();
    }

    /// <summary>Enqueues one run of the plan: the graph replayed, or the steps one by one.</summary>
    private void EnqueuePlan()
    {
        _runs++;
        if (_graph is not null)
        {
            CudaDriver.Launch(_graph, Stream);
        }
        else
        {
            EnqueueSteps();
        }
    }

    /// <summary>
    /// Runs the steps one by one (from <see cref="ExecutionPlan.FirstStep"/>; never the graph) with an event after each, <paramref name="runs"/> times after one
    /// warm-up run; returns each node's mean time in milliseconds, in execution order (a node's several steps summed).
    /// The stream is held by a gate kernel until every step and event of a run is queued, so the GPU runs them back to
    /// back as in the graph: the times are the GPU's, not the host's launch overhead (cuDNN's calls cost more on the host
    /// than small layers take on the GPU).
    /// </summary>
    public IReadOnlyList<(string Node, double Milliseconds)> ProfileSteps(int runs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        var steps = _plan.Steps;
        var first = _plan.FirstStep;
        var events = new CudaEvent[steps.Count + 1];
        var totals = new double[steps.Count];
        using var flag = CudaDriver.AllocatePinned(16, mapped: true);
        var flagDevice = CudaDriver.DevicePointer(flag);
        var gateArgs = stackalloc ulong[1];
        var gateParams = stackalloc void*[1];
        gateArgs[0] = flagDevice;
        gateParams[0] = gateArgs;
        var open = (int*)flag.DangerousGetHandle();
        try
        {
            for (var i = 0; i < events.Length; i++)
            {
                events[i] = CudaDriver.CreateEvent();
            }

            for (var r = -1; r < runs; r++)
            {
                Volatile.Write(ref *open, 0);
                if (_plan.Gate != IntPtr.Zero)
                {
                    CudaDriver.Launch(_plan.Gate, 1, 1, 0, Stream.Handle, gateParams, "bw_gate");
                }

                CudaDriver.Record(events[first], Stream);
                for (var i = first; i < steps.Count; i++)
                {
                    steps[i].Enqueue(this, i);
                    CudaDriver.Record(events[i + 1], Stream);
                }

                Volatile.Write(ref *open, 1);
                CudaDriver.Synchronize(Stream);
                if (r < 0)
                {
                    continue;
                }

                for (var i = first; i < steps.Count; i++)
                {
                    totals[i] += CudaDriver.ElapsedSeconds(events[i], events[i + 1]) * 1000;
                }
            }
        }
        finally
        {
            foreach (var e in events)
            {
                e?.Dispose();
            }
        }

        var order = new List<string>();
        var byNode = new Dictionary<string, double>(StringComparer.Ordinal);
        for (var i = first; i < steps.Count; i++)
        {
            if (!byNode.TryGetValue(steps[i].Node, out var sum))
            {
                order.Add(steps[i].Node);
            }

            byNode[steps[i].Node] = sum + (totals[i] / runs);
        }

        return order.Select(n => (n, byNode[n])).ToList();
    }

    /// <summary>With branches: the side lane waits for everything on the slot's stream so far (the run's inputs, earlier runs).</summary>
    private void Fork()
    {
        if (_fork is not null)
        {
            CudaDriver.Record(_fork, _slot.Stream);
            CudaDriver.Wait(_slot.SideStream!, _fork);
        }
    }

    /// <summary>With branches: the slot's stream waits for the side lane's last step, so the run ends on one stream.</summary>
    private void Join()
    {
        if (_join is not null)
        {
            CudaDriver.Record(_join, _slot.SideStream!);
            CudaDriver.Wait(_slot.Stream, _join);
        }
    }

    /// <summary>Enqueues step <paramref name="i"/> on its lane, after the other lane's step it waits for; records its event where the other lane waits for it.</summary>
    private void EnqueueStep(int i)
    {
        if (_plan.Lanes is not { } lanes)
        {
            _plan.Steps[i].Enqueue(this, i);
            return;
        }

        _lane = lanes.Lane[i];
        try
        {
            if (lanes.WaitFor[i] >= 0)
            {
                CudaDriver.Wait(Stream, _signals[lanes.WaitFor[i]]);
            }

            _plan.Steps[i].Enqueue(this, i);
            if (lanes.Signals[i])
            {
                CudaDriver.Record(_signals[i], Stream);
            }
        }
        finally
        {
            _lane = 0;
        }
    }

    private void EnqueueSteps()
    {
        var steps = _plan.Steps;
        if (_stepsEnqueued)
        {
            Fork();
            for (var i = _plan.FirstStep; i < steps.Count; i++)
            {
                EnqueueStep(i);
            }

            Join();
            return;
        }

        // Once only, and never inside a graph capture (which replays steps after the first run): the warm-up's streams,
        // handles and allocations would end the capture and leave the plan without its graph.
        _stepsEnqueued = true;

        // The first run pays each library's first calls (cuDNN's and cuBLASLt's kernels load lazily on first launch):
        // its enqueue time by kind of step says whose first calls a cold start waits for.
        var byKind = new Dictionary<string, double>(StringComparer.Ordinal);
        if (_plan.EarlyWarmUp is { } early)
        {
            // What is left of the early warm-up (its threads' streams, handles and allocations are done before any capture).
            byKind["ConvWarmWait"] = early.Wait();
        }

        var warming = System.Diagnostics.Stopwatch.GetTimestamp();
        if (WarmConvolutions(steps) > 0)
        {
            byKind["ConvWarmUp"] = System.Diagnostics.Stopwatch.GetElapsedTime(warming).TotalSeconds;
        }

        Fork();
        for (var i = _plan.FirstStep; i < steps.Count; i++)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            EnqueueStep(i);
            var kind = steps[i].GetType().Name;
            byKind[kind] = byKind.GetValueOrDefault(kind) + System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
        }

        Join();

        FirstEnqueueByKind = byKind;
    }

    /// <summary>
    /// Threads that make cuDNN's first call of each convolution before the first run of a session's first plan
    /// (BATCHWISE_CONV_WARM_THREADS; 0 or 1: none; default up to 8, one per core). cuDNN's first call of a convolution
    /// costs milliseconds of host time (its kernel loads lazily, its engine is set up): ResNet-50's 53 took 190-300 ms of
    /// a 0.5-0.7 s cold start on an H200; made on 8 threads, each with its own stream, handle and workspace, ~100 ms less.
    /// Read when first asked (a value that is not a count of 0 to 64 is refused then, in one line); tests set it.
    /// </summary>
    internal static int ConvWarmThreads
    {
        get => _convWarmThreads ??= EnvironmentSetting.Int("BATCHWISE_CONV_WARM_THREADS", Math.Min(8, Environment.ProcessorCount), 0, 64);
        set => _convWarmThreads = value;
    }

    private static int? _convWarmThreads;

    /// <summary>Scratch the warm-up may take (outputs and workspaces of all its threads); a plan that needs more is not warmed.</summary>
    private const long ConvWarmScratchBytes = 256L << 20;

    /// <summary>
    /// cuDNN's first call of every convolution of the plan, on <see cref="ConvWarmThreads"/> threads before the first
    /// run. They read the plan's own buffers and write to each thread's scratch output and workspace: the arena (the
    /// inputs already uploaded) is left as it is. Returns the convolutions called.
    /// </summary>
    private int WarmConvolutions(IReadOnlyList<PlanStep> steps)
    {
        var convs = steps.Skip(_plan.FirstStep).OfType<ConvStep>().Where(c => _plan.EarlyWarmUp?.Called(c.ChoiceKey) != true).ToList();
        var threads = Math.Min(ConvWarmThreads, convs.Count);
        if (!_plan.WarmConvolutionsFirst || threads < 2)
        {
            return 0;
        }

        var workspace = convs.Max(c => c.WorkspaceBytes);
        var output = convs.Max(c => _plan.Buffers[c.Buffers[3]].Bytes);
        if (threads * (workspace + output) > ConvWarmScratchBytes)
        {
            return 0;
        }

        var context = CudaDriver.CurrentContext();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            CudaDriver.SetCurrent(context);
            using var stream = CudaDriver.CreateStream();
            using var handle = Batchwise.Cuda.Interop.Cudnn.Create(stream);
            using var scratch = workspace > 0 ? CudaDriver.Allocate(workspace) : null;
            using var y = CudaDriver.Allocate(output);
            for (var i = t; i < convs.Count; i += threads)
            {
                convs[i].Call(this, handle, scratch?.Pointer ?? 0, y.Pointer);
            }

            CudaDriver.Synchronize(stream);
        });
        return convs.Count;
    }

    /// <summary>Host time the first step-by-step run spent enqueuing each kind of step (empty until then).</summary>
    public IReadOnlyDictionary<string, double> FirstEnqueueByKind { get; private set; } = new Dictionary<string, double>();

    public void Dispose()
    {
        foreach (var p in _params)
        {
            if (p != IntPtr.Zero)
            {
                NativeMemory.AlignedFree((void*)p);
            }
        }

        _graph?.Dispose();
        _staging?.Dispose();
        _fork?.Dispose();
        _join?.Dispose();
        foreach (var e in _signals.Values)
        {
            e.Dispose();
        }
    }
}
