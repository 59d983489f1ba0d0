using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Batchwise.Cuda.Interop;
using Batchwise.Cuda.Kernels;
using Batchwise.Cuda.Planning;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda;

/// <summary>Batchwise's own GPU engine: ONNX graphs compiled into execution plans over the CUDA driver, cuDNN, cuBLASLt and NVRTC.</summary>
public sealed class CudaEngine : IEngine
{
    /// <inheritdoc/>
    public string Name => "cuda";

    /// <summary>The split-K kernel's shape as the engine description says it.</summary>
    private static string SplitKText(SplitKShape shape) =>
        $"{(shape.FewestSplits == shape.MostSplits ? $"{shape.MostSplits}" : $"{shape.FewestSplits} to {shape.MostSplits}")} splits of a tile as one thread-block cluster where the unsplit grid fills at most 1/{shape.FewestSplits} of the SMs, up to {shape.Stages} stages";

    /// <inheritdoc/>
    public EngineDescription Describe(EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var info = CudaDevices.List().ElementAtOrDefault(options.DeviceId)
            ?? throw new BatchwiseException($"GPU {options.DeviceId} does not exist", "Run `batchwise devices` to list the GPUs.");
        var details = new Dictionary<string, string>
        {
            ["driver"] = info.DriverVersion,
            ["cudnn"] = info.CudnnVersion,
            ["cublaslt"] = info.CublasLtVersion,
            ["nvrtc"] = info.NvrtcVersion,
            ["compute_capability"] = info.ComputeCapability,
            ["precision"] = options.Precision == Precision.Int8 ? options.Calibration.Describe() + "; fp16 where it stays float" : options.Precision.ToString().ToLowerInvariant(),
            ["tf32"] = options.AllowTf32 ? "on" : "off",
            ["tactics"] = CudaSession.TimesTactics(options.Tactics) ? "timed" : "heuristic",
            ["conv_choices"] = GraphCompiler.NearestBatchChoicesFromEnvironment ? "nearest (a new batch octave starts from the nearest known octave's cuDNN choices)" : "octave (cuDNN's heuristics asked once per batch octave)",
            ["grouped_conv"] = GraphCompiler.GroupedConvFromEnvironment switch
            {
                GroupedConvChoice.Own => "own kernel (BATCHWISE_GROUPED_CONV=own)",
                GroupedConvChoice.Cudnn => "cuDNN (BATCHWISE_GROUPED_CONV=cudnn)",
                _ => "auto (own kernel for group widths 24-64 not powers of two, fp16)",
            },
            ["pointwise_conv"] = GraphCompiler.PointwiseConvFromEnvironment switch
            {
                PointwiseConvChoice.Cudnn => "cuDNN (BATCHWISE_POINTWISE_CONV=cudnn)",
                _ => "cuBLASLt: one GEMM with bias, residual and ReLU in its epilogue",
            },
            ["small_matmul"] = GraphCompiler.SmallMatmulFromEnvironment switch
            {
                SmallMatmulChoice.Library => "cuBLASLt (BATCHWISE_SMALL_MATMUL=cublaslt)",
                SmallMatmulChoice.Own => "own kernel for products of 1 to 8 rows (BATCHWISE_SMALL_MATMUL=own; a warp per output column; bias, residual and ReLU fused)",
                _ => "own kernel for one-row products (a warp per output column; bias, residual and ReLU fused), cuBLASLt from two rows",
            },
            ["stem_conv"] = GraphCompiler.StemConvFromEnvironment switch
            {
                StemConvChoice.Gemm => "patches x filter in one cuBLASLt GEMM (BATCHWISE_STEM_CONV=gemm)",
                StemConvChoice.Cudnn => "cuDNN over channels padded to 8 (BATCHWISE_STEM_CONV=cudnn)",
                _ => "own tensor-core kernel over channels padded to 8, bias + ReLU fused (cuDNN where it does not fit)",
            },
            ["stem_pool"] = GraphCompiler.StemPoolFromEnvironment == StemPoolChoice.Off
                ? "off (BATCHWISE_STEM_POOL=off): the input converted on entry, then the stem's layers one by one"
                : "own kernel for input -> Conv -> ReLU -> 3x3/2 MaxPool stems (ResNet's), reading the input as given; the layers one by one where it does not fit"
                    + GraphCompiler.StemSplitsFromEnvironment switch { 1 => "; a block a band (BATCHWISE_STEM_SPLITS=1)", 0 => "; a band's channels split over up to 4 blocks where the bands fill less than the SMs", var n => $"; a band's channels split over {n} blocks (BATCHWISE_STEM_SPLITS={n})" },
            ["splitk_conv"] = GraphCompiler.SplitKConvFromEnvironment switch
            {
                SplitKConvChoice.Off => "off (BATCHWISE_SPLITK_CONV=off): cuDNN",
                SplitKConvChoice.All => $"own kernel for dense fp16 convolutions, 1x1 included (BATCHWISE_SPLITK_CONV=all), {SplitKText(GraphCompiler.SplitKShapeFromEnvironment)}",
                SplitKConvChoice.Every => $"own kernel for dense fp16 convolutions, 1x1 included, unsplit where a split does not pay and the grid is at most two waves (BATCHWISE_SPLITK_CONV=every), {SplitKText(GraphCompiler.SplitKShapeFromEnvironment)}",
                _ => $"own kernel for dense fp16 convolutions of more than one tap, {SplitKText(GraphCompiler.SplitKShapeFromEnvironment)}",
            } + (GraphCompiler.SplitKProjectionsFromEnvironment ? "; projection shortcuts computed in their block end's kernel (BATCHWISE_SPLITK_PROJECTION=on)" : string.Empty),
            ["depthwise_activation"] = GraphCompiler.DepthwiseActivationFromEnvironment
                ? "in the depthwise kernel (Relu, Clip, HardSwish, HardSigmoid, LeakyRelu after a depthwise layer applied before it writes)"
                : "off (BATCHWISE_DEPTHWISE_ACTIVATION=off): a chain after the depthwise kernel",
            ["conv_workspace"] = string.Create(CultureInfo.InvariantCulture, $"{GraphCompiler.MaxConvWorkspace >> 20} MB at most for a cuDNN convolution's algorithm (BATCHWISE_CONV_WORKSPACE_MB)"),
            ["gelu"] = GraphCompiler.GeluFromEnvironment switch
            {
                GeluChoice.Tanh => "tanh form (BATCHWISE_GELU=tanh): erf GELU computed in tanh form, |delta| <= 4.7e-4, as the GELU epilogue of the product before it (fp16 plans; fp32 plans stay exact)",
                GeluChoice.Chain => "as exported (BATCHWISE_GELU=chain): erf GELU's nodes fused into one elementwise kernel before the next product",
                _ => "exact (erf GELU after a product computed in place behind it)",
            } + (GraphCompiler.GeluChunksFromEnvironment > 1 ? string.Create(CultureInfo.InvariantCulture, $"; the product and its pass in {GraphCompiler.GeluChunksFromEnvironment} row chunks (BATCHWISE_GELU_CHUNKS)") : string.Empty)
                + (GraphCompiler.GeluProductFromEnvironment
                    ? "; on sm_90, fp16 products with N in 256s and K in 64s ("
                        + (GraphCompiler.GeluProductTilesFromEnvironment > 0 ? string.Create(CultureInfo.InvariantCulture, $"{GraphCompiler.GeluProductTilesFromEnvironment} tiles at least, BATCHWISE_GELU_PRODUCT_TILES") : "a tile a multiprocessor at least")
                        + ") run as the own warpgroup-MMA kernel with the bias and the GELU (A&S erfc, |error| <= 1.5e-7) in it (BATCHWISE_GELU_PRODUCT=library: cuBLASLt's product, then the pass)"
                    : "; cuBLASLt's product, then the pass (BATCHWISE_GELU_PRODUCT=library)"),
            ["attention_rows"] = GraphCompiler.AttentionRowsFromEnvironment == KernelSource.AttentionWideRows
                ? "128 (BATCHWISE_ATTENTION_ROWS=128): the fused attention kernel's block takes 128 query rows in eight warps where the head is at most 80 wide"
                : "64 (the fused attention kernel's block takes 64 query rows in four warps; BATCHWISE_ATTENTION_ROWS=128 takes 128)",
            ["attention"] = GraphCompiler.AttentionFromEnvironment switch
            {
                AttentionChoice.Cudnn => "cudnn (BATCHWISE_ATTENTION=cudnn): recognised attention blocks of half plans run by cuDNN's fused attention wherever it takes them (a mask as a half bias), the own kernel elsewhere",
                AttentionChoice.Own => "own (BATCHWISE_ATTENTION=own): the engine's fused attention kernel",
                _ => "auto: cuDNN's fused attention for blocks of half plans with at least as many (batch item, head) pairs as the device has multiprocessors, where cuDNN takes them (a padding mask as a half bias per key); the engine's fused kernel for smaller ones and for masks that vary by query, as causal ones do (BATCHWISE_ATTENTION=own|cudnn forces one)",
            },
            ["attention_mask"] = GraphCompiler.AttentionMaskFromEnvironment
                ? "lengths (cuDNN's attention takes a padding mask that keeps each item's first keys as sequence lengths, found by one small kernel a run; the own kernel computes the items whose mask is not such a prefix; BATCHWISE_ATTENTION_MASK=bias gives it every mask as a half bias)"
                : "bias (BATCHWISE_ATTENTION_MASK=bias): cuDNN's attention takes every mask as a half bias",
            ["attention_configs"] = GraphCompiler.AttentionConfigsFromEnvironment <= 1 || !CudaSession.TimesTactics(options.Tactics)
                ? "1 (cuDNN's attention: the heuristics' first configuration that finalizes)"
                : string.Create(CultureInfo.InvariantCulture, $"{GraphCompiler.AttentionConfigsFromEnvironment} (cuDNN's attention: the fastest of the heuristics' first {GraphCompiler.AttentionConfigsFromEnvironment} configurations that finalize, timed when the plan is built and kept in the timing cache; BATCHWISE_ATTENTION_CONFIGS=1 takes the first untimed)"),
            ["pdl"] = GraphCompiler.ProgrammaticLaunchFromEnvironment
                ? "on (BATCHWISE_PDL=on): generated kernels launch with programmatic dependent launch (sm_90), each scheduled as the one before it ends"
                : "off (each kernel launched after the one before it has ended; BATCHWISE_PDL=on overlaps them on sm_90)",
            ["smem_carveout"] = GraphCompiler.SharedCarveoutFromEnvironment is { } carveout
                ? string.Create(CultureInfo.InvariantCulture, $"{carveout}% (BATCHWISE_SMEM_CARVEOUT): every generated kernel prefers that share of L1 as shared memory")
                : "default (the driver picks each generated kernel's L1 / shared memory split; BATCHWISE_SMEM_CARVEOUT=max|0-100 sets one)",
            ["l2_persist"] = L2Persistence.Describe(L2Persistence.SetAsideFromEnvironment),
            ["cuda_graph"] = options.UseCudaGraph ? "on" : "off",
            ["transfers"] = options.IncludeTransfers ? "h2d+compute+d2h" : "off (compute only)",
            ["batch_profiles"] = options.BatchProfiles.Count == 0 ? "none (a plan per batch size)" : string.Join(',', options.BatchProfiles),
            ["shape_profiles"] = options.ShapeProfiles.Count == 0 ? "none" : string.Join(' ', options.ShapeProfiles.Select(p => p.Text)),
        };
        var int8 = Int8Layers.Enabled || options.Precision == Precision.Int8;
        if (int8)
        {
            details["int8_conv"] = GraphCompiler.Int8ConvFromEnvironment switch
            {
                Int8ConvChoice.Own => "own int8 tensor-core kernel wherever the channels allow (BATCHWISE_INT8_CONV=own; input channels in 64s; requantization and a residual block's end fused)",
                Int8ConvChoice.Pointwise => "own persistent 1x1 kernel on every unstrided 1x1 of 64-256 input channels and output channels in 128s, own narrow 1x1 kernel (dp4a) on expansions from 8-64 input channels (BATCHWISE_INT8_CONV=pointwise), cuDNN and cuBLASLt elsewhere",
                Int8ConvChoice.Library => "cuDNN and cuBLASLt (BATCHWISE_INT8_CONV=library)",
                _ => "own persistent 1x1 kernel for expanding 1x1s (output channels >= 2x input, 64-256 input channels, output in 128s; a residual block's end fused), cuDNN and cuBLASLt elsewhere",
            };
            details["int8_pointwise"] = string.Create(CultureInfo.InvariantCulture, $"{(GraphCompiler.Int8PointwiseWideFromEnvironment ? "64-256 input channels in 32s, outputs in 64s" : "64, 128 or 256 input channels, outputs in 128s")} (BATCHWISE_INT8_POINTWISE_WIDE), {GraphCompiler.Int8PointwiseStagesFromEnvironment} tiles in flight a block (BATCHWISE_INT8_POINTWISE_STAGES), built for {GraphCompiler.Int8PointwiseResidentBlocksFromEnvironment} resident blocks an SM where shared memory allows (BATCHWISE_INT8_POINTWISE_BLOCKS), {(GraphCompiler.Int8PointwiseWarpsFromEnvironment ? "each warp its own pipeline" : "a block's warps in step")} (BATCHWISE_INT8_POINTWISE_KERNEL), up to {GraphCompiler.Int8PointwiseMostWarpsFromEnvironment} warps a block where one block fits an SM (BATCHWISE_INT8_POINTWISE_WARPS), {GraphCompiler.Int8PointwiseTileFromEnvironment switch { Int8WarpTile.ThirtyTwo => "32-pixel warp tiles", Int8WarpTile.Pairs => "warp pairs on 32-pixel tiles", _ => "16-pixel warp tiles" }} for the plain block ends (BATCHWISE_INT8_POINTWISE_ROWS), projection shortcuts {(GraphCompiler.Int8ProjectionsFromEnvironment ? "computed in their block ends" : "as their own kernels")} (BATCHWISE_INT8_PROJECTION), the next block's 1x1 reduction {(GraphCompiler.Int8ChainLeastWarpsFromEnvironment is var least && least > 0 ? $"computed in a block end's kernel where both filters fit beside {least} warps" : "as its own kernel")} (BATCHWISE_INT8_CHAIN), products {(GraphCompiler.Int8WarpGroupsFromEnvironment ? "on warpgroup MMA on sm_90" : "on mma.sync")} (BATCHWISE_INT8_WGMMA)");
        }

        if (int8 && Int8Layers.GemmsEnabled)
        {
            details["int8_gemm"] = GraphCompiler.Int8GemmFromEnvironment == Int8GemmChoice.Graph
                ? "cuDNN's graph as a 1x1 convolution, the per-column scale and offset fused, float16 written (BATCHWISE_INT8_GEMM=graph), cuBLASLt where cuDNN refuses"
                : "cuBLASLt, int32 sums dequantized by the kernel that reads them";
        }

        if (int8 && Int8Layers.GraphMode != "off")
        {
            details["int8_graph_search"] = string.Create(CultureInfo.InvariantCulture, $"{Int8Layers.GraphConfigs} configurations timed within {Int8Layers.GraphSearchSeconds:0.##} s per problem and {Int8Layers.GraphPlanSeconds:0.##} s per plan; a new batch size takes {Int8Layers.GraphChoices switch
            {
                Int8GraphChoices.Octave => "a known batch size's choices within its octave (a new octave searches)",
                Int8GraphChoices.Exact => "a search of its own",
                _ => "the nearest known batch size's choices within a factor of 4 (farther, a search)",
            }} ({Int8Layers.GraphChoicesSwitch})");
        }

        return new EngineDescription(Name, typeof(CudaEngine).Assembly.GetName().Version?.ToString() ?? "0", info.Name, details);
    }

    /// <summary>The device contexts started by <see cref="Prestart"/>, held for the process (a session's own retain is then quick).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Task<PrimaryContext?>> Prestarted = new();

    /// <inheritdoc/>
    public void Prestart(EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Prestarted.GetOrAdd(options.DeviceId, id => Task.Run(() =>
        {
            try
            {
                CudaDriver.Initialize();
                return new PrimaryContext(CudaDriver.Device(id));
            }
            catch (Exception e) when (e is BatchwiseException or DllNotFoundException or EntryPointNotFoundException)
            {
                return (PrimaryContext?)null; // the session's own load reports it (CudaException is a BatchwiseException)
            }
        }));
    }

    /// <inheritdoc/>
    public EngineOptions Effective(OnnxModel model, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.SavedEngine is { } path ? SavedEngine.Effective(path, options) : options;
    }

    /// <inheritdoc/>
    public IEngineSession Load(OnnxModel model, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Precision is not (Precision.Fp32 or Precision.Fp16 or Precision.Int8))
        {
            throw new BatchwiseException($"--precision {options.Precision.ToString().ToLowerInvariant()} is not supported by the cuda engine", "Use --precision fp32, fp16 or int8.");
        }

        // --precision int8 on a float model: quantized here (QDQ, full 8-bit weights), then run as any QDQ model with the
        // int8 path on for this session. A saved int8 engine carries its quantized model and is never calibrated again.
        // The driver is asked first: a machine without a GPU says so before a calibration that may take minutes.
        var spans = new StartupSpans();
        if (options.Precision == Precision.Int8 && model.SavedEngine is null)
        {
            spans.Measure("load_cuda_init", CudaDriver.Initialize);
            model = spans.Measure("load_int8_quantize", () => Transforms.CalibratedInt8.Quantize(model, options.Calibration, reduceRange: false));
        }

        // Einsum runs as the Transpose/Reshape/MatMul it decomposes into (on a copy: the caller's model is left as given).
        // A saved engine's model is decomposed the same way (its derived constants are named after the same nodes).
        if (model.Graph.Node.Any(n => n.OpType == "Einsum" && OperatorRegistry.NormalizeDomain(n.Domain).Length == 0))
        {
            var (savedEngine, leftOut) = (model.SavedEngine, model.WeightsLeftOut);
            model = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
            (model.SavedEngine, model.WeightsLeftOut) = (savedEngine, leftOut);
            new Transforms.EinsumDecomposition().Apply(model);
        }

        // A QOperator-format model (QLinearConv, ONNX Runtime's QLinearAdd and QLinearGlobalAveragePool) runs in its QDQ
        // form, as any QDQ model (on a copy, as for Einsum).
        if (model.Graph.Node.Any(Transforms.QOperatorToQdq.Rewrites))
        {
            var (savedEngine, leftOut) = (model.SavedEngine, model.WeightsLeftOut);
            model = OnnxModel.FromProto(model.Proto.Clone(), model.Name);
            (model.SavedEngine, model.WeightsLeftOut) = (savedEngine, leftOut);
            new Transforms.QOperatorToQdq().Apply(model);
        }

        // Validate before touching the GPU: an unsupported operator fails the same way on every machine.
        OperatorSupport.Validate(model);
        spans.Measure("load_cuda_init", CudaDriver.Initialize);
        if (model.SavedEngine is { } path)
        {
            // The manifest first (a file for another device or library version is refused before anything else), then
            // the artefacts (a ResNet-50's 51 MB of device-ready weights) read and checked on another thread while this
            // one creates the CUDA context and opens cuDNN and cuBLASLt.
            var effective = SavedEngine.Effective(path, options);
            var reading = Task.Run(() => SavedEngine.Read(path, options, spans));
            try
            {
                return new CudaSession(model, effective, reading, spans);
            }
            catch
            {
                _ = reading.ContinueWith(t => t.Exception, TaskScheduler.Default); // observed: the session's own error is the one to report
                throw;
            }
        }

        if (options.Precision != Precision.Int8 && !Int8Layers.Enabled && model.Graph.Node.Any(n => n.OpType == "DequantizeLinear" && n.Domain.Length == 0))
        {
            // A QDQ model at fp16 or fp32 runs the float math between its pairs, slower than its int8 path: said once a load.
            Transforms.CalibratedInt8.Notes($"note: '{model.Name}' is quantized (QDQ): at --precision {options.Precision.ToString().ToLowerInvariant()} the cuda engine runs it in float between its QuantizeLinear/DequantizeLinear pairs; --precision int8 runs its int8 path");
        }

        return new CudaSession(model, options, spans: spans);
    }

    /// <summary>
    /// Builds the plan of every batch profile of <paramref name="model"/> (compiling its kernels and choosing its
    /// algorithms) and writes them with the model to <paramref name="path"/>, for a quick first inference in a new process.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="options">Precision, TF32, batch profiles...</param>
    /// <param name="path">The .bwengine file to write.</param>
    /// <param name="inputsFor">Inputs of given shapes, to build each profile's plan with.</param>
    /// <param name="progress">Receives a line per profile built.</param>
    /// <returns>The plans built.</returns>
    public static IReadOnlyList<PlanBuild> Build(OnnxModel model, EngineOptions options, string path, Func<IReadOnlyList<long[]>, IReadOnlyList<Tensor>> inputsFor, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        using var session = (CudaSession)new CudaEngine().Load(model, options);
        session.WarmUp(inputsFor, progress);
        if (options.Precision == Precision.Int8)
        {
            model = session.Model; // the model quantized at load is what the file carries: a load never calibrates again
        }

        SavedEngine.Write(path, model, options, session);

        // The file carries the model's structure without its large float weights: loaded as a new process would load
        // it, every plan must build and run from the saved, device-ready weights alone. Where a plan reads a left-out
        // weight on the host, the file is written again with the model's weights kept (larger and slower to read, right).
        try
        {
            using var check = (CudaSession)new CudaEngine().Load(SavedEngineFile.ReadModel(path).Model, options);
            check.WarmUp(inputsFor);
        }
        catch (WeightsLeftOutException e)
        {
            progress?.Report($"a plan reads a weight on the host ({e.Message}): the saved engine keeps the model's float weights");
            session.MakeCurrent();
            SavedEngine.Write(path, model, options, session, keepWeights: true);
        }
        catch
        {
            File.Delete(path); // a file that does not load as it was built is not left behind
            throw;
        }

        return session.Builds;
    }
}

/// <summary>
/// A model loaded on one GPU. Three levels, each cached: kernels compiled once per operator signature (on disk too),
/// library choices per problem, and plans per input shape built from those two in milliseconds. Weights and what is
/// derived from them are made and uploaded once. Runs take an <see cref="ExecutionSlot"/> (stream, arena, handles) from
/// a pool, so plans share arenas; a plan's build makes only runs that need that plan wait, never the others. With batch
/// profiles a batch between two profiles runs padded to the next, at once.
/// </summary>
internal sealed class CudaSession : IEngineSession, IPlanTarget, IPlanBuilds, IStagedExecution, IHostMemoryRegistration
{
    private readonly OnnxModel _model;
    private readonly PrimaryContext _context;
    private readonly Dictionary<string, HostTensor> _initializers;
    private readonly HashSet<string> _hostInputs;
    private readonly ConcurrentDictionary<string, Lazy<ExecutionPlan>> _plans = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task> _exactBuilds = new(StringComparer.Ordinal);
    private readonly Dictionary<(HostTensor, ElementType), DeviceMemory> _weights = [];
    private readonly SlotPool<ExecutionSlot> _slots;
    private readonly List<PlanBuild> _builds = [];
    private readonly Lock _build = new();
    private readonly CudaStream _uploadStream;
    private readonly int _device;
    private readonly string _busId;
    private readonly SessionConstants _constants = new();
    private readonly BatchAxis _batchAxis;
    private CudnnHandle? _cudnn;
    private CublasLtHandle? _lt;
    private TimingCache? _timingCache;
    private ConvWarmUp? _earlyWarmUp;
    private readonly GraphFacts _graphFacts;
    private readonly bool _useCudaGraph;
    private readonly TacticSelection _tactics;
    private readonly bool _exactPlans;
    private long _largestArena;
    private int _continuationPlans;
    private bool _disposed;

    /// <summary>
    /// Most plans for the rest of a graph after a data-dependent node (one per distinct count, per input shape) a
    /// session keeps; a run whose count finds the cache full builds its plan, runs it and drops it.
    /// </summary>
    internal const int MaxContinuationPlans = 64;

    /// <param name="model">The model (a saved engine's structure when <paramref name="reading"/> is given).</param>
    /// <param name="options">The options, a saved engine's applied.</param>
    /// <param name="reading">A saved engine being read on another thread: the context and library handles are made meanwhile.</param>
    /// <param name="spans">Where the start's spans go.</param>
    public CudaSession(OnnxModel model, EngineOptions options, Task<SavedEngine>? reading = null, StartupSpans? spans = null)
    {
        _model = model;
        Startup = spans ?? new StartupSpans();
        var started = Stopwatch.GetTimestamp();
        if (options.PipelineDepth < 1)
        {
            throw new BatchwiseException($"Pipeline depth {options.PipelineDepth} is below 1", "Use 1 (one staged run per stream) or more.");
        }

        _slots = new SlotPool<ExecutionSlot>(options.PipelineDepth);
        _device = CudaDriver.Device(options.DeviceId);
        _context = new PrimaryContext(_device);
        _context.MakeCurrent();
        Startup.Add("load_context", Stopwatch.GetElapsedTime(started).TotalSeconds);
        ComputeCapability = (CudaDriver.Attribute(_device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10) + CudaDriver.Attribute(_device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        MaxSharedBytesPerBlock = CudaDriver.Attribute(_device, CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        Multiprocessors = CudaDriver.Attribute(_device, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        _busId = CudaDriver.PciBusId(_device);
        AllowTf32 = options.AllowTf32;
        Int8 = options.Precision == Precision.Int8;
        Precision = Int8 ? Precision.Fp16 : options.Precision;
        _useCudaGraph = options.UseCudaGraph;
        _tactics = options.Tactics;
        _exactPlans = options.ExactPlans;
        IncludeTransfers = options.IncludeTransfers;
        _uploadStream = Startup.Measure("load_stream", CudaDriver.CreateStream);
        Kernels = Startup.Measure("load_kernel_cache", () => new KernelCache(ComputeCapability, "nvrtc" + Nvrtc.Version(), KernelCacheDirectory()));
        SavedEngine? saved = null;
        if (reading is not null)
        {
            // While the file is read: the libraries' handles for planning, and the first slot with its own.
            OpenLibrariesAhead(model);
            var waiting = Stopwatch.GetTimestamp();
            saved = reading.GetAwaiter().GetResult();
            Startup.Add("load_saved_wait", Stopwatch.GetElapsedTime(waiting).TotalSeconds);

            // cuDNN's first calls of the saved choices' convolutions start now, beside loading and the first plan's build.
            _earlyWarmUp = Startup.Measure("load_conv_warm_start", () => ConvWarmUp.Start(saved.Choices, Planning.ExecutionContext.ConvWarmThreads, Startup));
        }

        _initializers = Startup.Measure("load_initializers", () => _constants.AddInitializers(model.Graph.Initializer, defer: saved?.Constants is not null));
        started = Stopwatch.GetTimestamp();
        _hostInputs = GraphCompiler.HostValueInputs(model);
        _graphFacts = new GraphFacts(model, ConcurrentBranches);
        DataDependent = model.Graph.Node.Any(n => OperatorRegistry.Find(n.Domain, n.OpType, model.OpsetOf(n.Domain))?.HasDataDependentShape == true);
        _batchAxis = model.FindBatchAxis();
        Inputs = model.Inputs;
        Outputs = model.Outputs;
        BatchProfiles = CheckProfiles(options.BatchProfiles);
        ShapeProfiles = CheckShapeProfiles(options.ShapeProfiles);
        Startup.Add("load_session", Stopwatch.GetElapsedTime(started).TotalSeconds);
        if (saved is not null)
        {
            Startup.Measure("load_saved_kernels", () => Kernels.AddImages(saved.Kernels, saved.KernelContents));
            Choices.Load(saved.Choices);
            if (saved.Constants is { } constants)
            {
                _constants.Load(constants);
            }
        }
    }

    /// <inheritdoc/>
    public StartupSpans Startup { get; }

    /// <summary>Creates the planning handles and the first execution slot (stream, its handles) of the libraries the model's operators use.</summary>
    private void OpenLibrariesAhead(OnnxModel model)
    {
        var cudnn = model.Graph.Node.Any(n => n.OpType is "Conv" or "ConvTranspose");
        var cublasLt = model.Graph.Node.Any(n => n.OpType is "MatMul" or "Gemm" or "Attention" or "MatMulInteger");
        if (cudnn)
        {
            _ = PlanningCudnn;
        }

        if (cublasLt)
        {
            _ = PlanningCublasLt;
        }

        var started = Stopwatch.GetTimestamp();
        var slot = new ExecutionSlot { Spans = Startup };
        Startup.AddOnce("slot_stream", Stopwatch.GetElapsedTime(started).TotalSeconds);
        slot.OpenLibraries(cudnn, cublasLt);
        _slots.AddIdle(slot);
    }

    public IReadOnlyList<TensorSpec> Inputs { get; }

    public IReadOnlyList<TensorSpec> Outputs { get; }

    public int ComputeCapability { get; }

    public bool AllowTf32 { get; }

    /// <summary>Float32, or float16 (also for <see cref="Int8"/>: what stays float runs in fp16).</summary>
    public Precision Precision { get; }

    /// <summary>--precision int8: the model is a QDQ model quantized at load, and the int8 path is on for this session (whatever BATCHWISE_INT8 says).</summary>
    public bool Int8 { get; }

    /// <summary>The model this session runs (for --precision int8, the QDQ model quantized at load).</summary>
    internal OnnxModel Model => _model;

    /// <summary>Every prepared run copies its inputs up and its outputs back (bench --transfers).</summary>
    public bool IncludeTransfers { get; }

    /// <summary>
    /// The graph has a node whose output size depends on values (NonZero): its plans may stop there for the host to
    /// read a count (batch profiles and staged runs then take the ordinary path).
    /// </summary>
    public bool DataDependent { get; }

    /// <summary>Runs capture CUDA graphs (each segment of a plan split at a data-dependent node its own).</summary>
    internal bool UseCudaGraph => _useCudaGraph;

    /// <summary>The largest arena a plan of this session needs so far.</summary>
    internal long LargestArena => Interlocked.Read(ref _largestArena);

    /// <summary>Plans for the rest of a graph after a data-dependent node kept now (at most <see cref="MaxContinuationPlans"/>).</summary>
    internal int ContinuationPlans => Volatile.Read(ref _continuationPlans);

    /// <summary>The session's compiled kernels.</summary>
    public KernelCache Kernels { get; }

    /// <summary>The session's library choices.</summary>
    public TacticStore Choices { get; } = new();

    /// <summary>A new batch octave's convolutions start from the nearest known octave's choices (BATCHWISE_CONV_CHOICES=nearest; tests set it).</summary>
    public bool NearestBatchChoices { get; internal set; } = GraphCompiler.NearestBatchChoicesFromEnvironment;

    /// <summary>Who runs grouped convolutions in half precision (BATCHWISE_GROUPED_CONV=auto|own|cudnn; tests set it).</summary>
    public GroupedConvChoice GroupedConvolutions { get; internal set; } = GraphCompiler.GroupedConvFromEnvironment;

    /// <summary>Who runs pointwise convolutions in half precision (BATCHWISE_POINTWISE_CONV=auto|gemm|cudnn; tests set it).</summary>
    public PointwiseConvChoice PointwiseConvolutions { get; internal set; } = GraphCompiler.PointwiseConvFromEnvironment;

    /// <summary>Who runs matrix products of 1 to 8 rows (BATCHWISE_SMALL_MATMUL=auto|own|cublaslt; tests set it).</summary>
    public SmallMatmulChoice SmallMatmuls { get; internal set; } = GraphCompiler.SmallMatmulFromEnvironment;

    /// <summary>Who runs convolutions over fewer than 8 channels (BATCHWISE_STEM_CONV=cudnn|gemm|own; tests set it).</summary>
    public StemConvChoice StemConvolutions { get; internal set; } = GraphCompiler.StemConvFromEnvironment;

    /// <inheritdoc/>
    public int MaxSharedBytesPerBlock { get; }

    /// <summary>Who runs a stem of convolution, ReLU and 3x3 max pooling (BATCHWISE_STEM_POOL=auto|off; tests set it).</summary>
    public StemPoolChoice StemPools { get; internal set; } = GraphCompiler.StemPoolFromEnvironment;

    /// <summary>The fused stem's channel splits (BATCHWISE_STEM_SPLITS=auto|1|2|4, auto by default; tests set it).</summary>
    public int StemSplits { get; internal set; } = GraphCompiler.StemSplitsFromEnvironment;

    /// <summary>Whether an activation after a depthwise convolution is the depthwise kernel's own (BATCHWISE_DEPTHWISE_ACTIVATION=on|off).</summary>
    public bool DepthwiseActivations { get; internal set; } = GraphCompiler.DepthwiseActivationFromEnvironment;

    /// <summary>Who runs a QDQ model's int8 convolutions (BATCHWISE_INT8_CONV=library|own|pointwise; tests set it).</summary>
    public Int8ConvChoice Int8Convolutions { get; internal set; } = GraphCompiler.Int8ConvFromEnvironment;

    /// <summary>Who runs a QDQ model's int8 MatMuls and Gemms (BATCHWISE_INT8_GEMM=cublaslt|graph; tests set it).</summary>
    public Int8GemmChoice Int8Gemms { get; internal set; } = GraphCompiler.Int8GemmFromEnvironment;

    /// <summary>Tiles in flight a block of the own pointwise int8 kernel (BATCHWISE_INT8_POINTWISE_STAGES=2..4; tests set it).</summary>
    public int Int8PointwiseStages { get; internal set; } = GraphCompiler.Int8PointwiseStagesFromEnvironment;

    /// <summary>Resident blocks an SM the own pointwise int8 kernel is built for (BATCHWISE_INT8_POINTWISE_BLOCKS=2..4; tests set it).</summary>
    public int Int8PointwiseResidentBlocks { get; internal set; } = GraphCompiler.Int8PointwiseResidentBlocksFromEnvironment;

    /// <summary>The own pointwise int8 kernel takes 64-256 input channels in 32s and outputs in 64s (BATCHWISE_INT8_POINTWISE_WIDE=on|off; tests set it).</summary>
    public bool Int8PointwiseWide { get; internal set; } = GraphCompiler.Int8PointwiseWideFromEnvironment;

    /// <summary>The own pointwise int8 kernel with every warp its own pipeline (BATCHWISE_INT8_POINTWISE_KERNEL=warp|block, warp by default; tests set it).</summary>
    public bool Int8PointwiseWarps { get; internal set; } = GraphCompiler.Int8PointwiseWarpsFromEnvironment;

    /// <summary>A residual block's projection shortcut computed inside its block end's pointwise kernel (BATCHWISE_INT8_PROJECTION=on|off; tests set it).</summary>
    public bool Int8Projections { get; internal set; } = GraphCompiler.Int8ProjectionsFromEnvironment;

    /// <summary>The fewest warps a block with which a residual block end's pointwise kernel computes the next block's 1x1 reduction too (BATCHWISE_INT8_CHAIN=on|any|off: 16, 8, 0; tests set it).</summary>
    public int Int8ChainLeastWarps { get; internal set; } = GraphCompiler.Int8ChainLeastWarpsFromEnvironment;

    /// <summary>The warp-tiled pointwise int8 kernel's products on warpgroup MMA on sm_90 (BATCHWISE_INT8_WGMMA=on|off, on by default; tests set it).</summary>
    public bool Int8WarpGroups { get; internal set; } = GraphCompiler.Int8WarpGroupsFromEnvironment;

    /// <summary>Warps a block of the warp-tiled pointwise int8 kernel may have where only one block fits an SM (BATCHWISE_INT8_POINTWISE_WARPS=8..16, 16 by default; tests set it).</summary>
    public int Int8PointwiseMostWarps { get; internal set; } = GraphCompiler.Int8PointwiseMostWarpsFromEnvironment;

    /// <summary>The warp tiles of the warp-tiled pointwise int8 kernel (BATCHWISE_INT8_POINTWISE_ROWS=16|32|pairs, 16 by default; tests set it).</summary>
    public Int8WarpTile Int8PointwiseTile { get; internal set; } = GraphCompiler.Int8PointwiseTileFromEnvironment;

    /// <summary>Who runs dense convolutions too small to fill the device (BATCHWISE_SPLITK_CONV=auto|all|off; tests set it).</summary>
    public SplitKConvChoice SplitKConvolutions { get; internal set; } = GraphCompiler.SplitKConvFromEnvironment;

    /// <summary>A residual block's projection shortcut computed in its block end's split-K kernel (BATCHWISE_SPLITK_PROJECTION=on|off; tests set it).</summary>
    public bool SplitKProjections { get; internal set; } = GraphCompiler.SplitKProjectionsFromEnvironment;

    /// <summary>The split-K kernel's shape (BATCHWISE_SPLITK_MAX_SPLITS, _MIN_SPLITS, _STAGES; tests set it).</summary>
    public SplitKShape SplitKConvShape { get; internal set; } = GraphCompiler.SplitKShapeFromEnvironment;

    /// <inheritdoc/>
    public int Multiprocessors { get; }

    /// <summary>Generated kernels launch with programmatic dependent launch on sm_90 (BATCHWISE_PDL=on|off; tests set it).</summary>
    public bool ProgrammaticLaunch { get; internal set; } = GraphCompiler.ProgrammaticLaunchFromEnvironment;

    /// <summary>
    /// L2 set aside for the plans' constants (BATCHWISE_L2_PERSIST; null: off, <see cref="long.MaxValue"/>: the device's
    /// most): plans built after a change carry it, and their CUDA graphs' kernels keep that share of the weights in L2.
    /// </summary>
    internal long? L2SetAside { get; set; } = L2Persistence.SetAsideFromEnvironment;

    /// <summary>How an erf GELU after a matrix product runs (BATCHWISE_GELU=exact|tanh|chain; tests set it).</summary>
    public GeluChoice Gelu { get; internal set; } = GraphCompiler.GeluFromEnvironment;

    /// <summary>Row chunks a product followed by erf GELU runs in (BATCHWISE_GELU_CHUNKS, 1 = whole; tests set it).</summary>
    public int GeluChunks { get; internal set; } = GraphCompiler.GeluChunksFromEnvironment;

    /// <summary>Whether fp16 products followed by erf GELU run as the own warpgroup-MMA kernel on sm_90 (the default; BATCHWISE_GELU_PRODUCT=library not; tests set it).</summary>
    public bool GeluProductOwn { get; internal set; } = GraphCompiler.GeluProductFromEnvironment;

    /// <summary>The fewest tiles an fp16 GELU product needs for the own kernel (BATCHWISE_GELU_PRODUCT_TILES; 0, the default, one a multiprocessor; tests set it).</summary>
    public int GeluProductMinTiles { get; internal set; } = GraphCompiler.GeluProductTilesFromEnvironment;

    /// <summary>Who runs recognised attention blocks (BATCHWISE_ATTENTION=auto|own|cudnn; tests set it).</summary>
    public AttentionChoice Attention { get; internal set; } = GraphCompiler.AttentionFromEnvironment;

    /// <inheritdoc/>
    public int AttentionConfigs { get; internal set; } = GraphCompiler.AttentionConfigsFromEnvironment;

    /// <inheritdoc/>
    public bool AttentionSequenceLengths { get; internal set; } = GraphCompiler.AttentionMaskFromEnvironment;

    /// <summary>The fused attention kernel's query rows a block (BATCHWISE_ATTENTION_ROWS=64|128; tests set it).</summary>
    public int AttentionRows { get; internal set; } = GraphCompiler.AttentionRowsFromEnvironment;

    /// <summary>A staged run's device rows of a buffer (two or more) copied by one segment-copy launch (BATCHWISE_GATHER=kernel|copies; tests set it).</summary>
    public bool RowsByKernel { get; internal set; } = RowCopies.KernelFromEnvironment;

    /// <summary>The smallest page-locked host row a staged run copies in place (BATCHWISE_HOST_ROW_BYTES; tests set it): smaller rows go through staging.</summary>
    public long HostRowBytes { get; internal set; } = RowCopies.HostRowBytesFromEnvironment;

    /// <summary>The segment-copy kernel (<see cref="KernelSource.CopySegments"/>), compiled (or loaded) on first use.</summary>
    internal IntPtr CopySegmentsFunction => _copySegments != IntPtr.Zero ? _copySegments : _copySegments = Kernels.FunctionOf(KernelSource.CopySegments(0).Source);

    private IntPtr _copySegments;

    /// <inheritdoc/>
    public IReadOnlyList<int> BatchProfiles { get; }

    /// <summary>Shape profiles by input name.</summary>
    public IReadOnlyDictionary<string, ShapeProfile> ShapeProfiles { get; }

    /// <inheritdoc/>
    public event Action<PlanBuild>? PlanBuilt;

    /// <inheritdoc/>
    public event Action<string, Exception>? BackgroundBuildFailed;

    /// <inheritdoc/>
    public IReadOnlyList<IReadOnlyList<long[]>> WarmUpShapes
    {
        get
        {
            var batches = BatchProfiles.Count > 0 ? BatchProfiles.Select(b => (long?)b).ToList() : [_batchAxis.IsBatchable ? 1 : null];
            var result = new List<IReadOnlyList<long[]>>();
            foreach (var batch in batches.OrderDescending())
            {
                // One list of candidate shapes per input; warm-up takes their product.
                var perInput = Inputs.Select(spec =>
                {
                    if (ShapeProfiles.TryGetValue(spec.Name, out var profile))
                    {
                        return profile.Grid(_batchAxis.IsBatchable ? batch : null).ToList();
                    }

                    var dims = spec.Shape.Select((d, i) => d.Value ?? (i == 0 && batch is { } b ? b : -1)).ToArray();
                    if (dims.Any(d => d < 0))
                    {
                        throw new BatchwiseException($"Input '{spec.Name}' ({spec.ShapeText}) has a dynamic dimension that neither a batch profile nor a shape profile covers, so there is no plan to build ahead", $"Give its range with --shape-profile {spec.Name}:MIN..MAX[:STEP] ({ShapeProfile.Syntax}).");
                    }

                    return new List<long[]> { dims };
                }).ToList();
                IEnumerable<IReadOnlyList<long[]>> combos = [[]];
                foreach (var options in perInput)
                {
                    combos = combos.SelectMany(c => options.Select(o => (IReadOnlyList<long[]>)[.. c, o]));
                }

                result.AddRange(combos);
            }

            return result;
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<PlanBuild> Builds
    {
        get
        {
            lock (_builds)
            {
                return [.. _builds];
            }
        }
    }

    /// <summary>
    /// Whether a session asked for <paramref name="tactics"/> (--tactics) times cuDNN's and cuBLASLt's candidates when it
    /// plans. Not asked: BATCHWISE_CUDNN_ALGO (heuristic|timed) where set, else timed (the default since session 23: the
    /// candidates are timed inside a captured CUDA graph, so the winners are the winners of the graph the plan replays).
    /// </summary>
    internal static bool TimesTactics(TacticSelection tactics) => tactics switch
    {
        TacticSelection.Timed => true,
        TacticSelection.Heuristic => false,
        _ => TacticsFromEnvironment ?? true,
    };

    private static bool? TacticsFromEnvironment => Environment.GetEnvironmentVariable("BATCHWISE_CUDNN_ALGO")?.Trim().ToLowerInvariant() switch
    {
        null or "" => null,
        "heuristic" => false,
        "timed" => true,
        var other => throw new BatchwiseException($"BATCHWISE_CUDNN_ALGO '{other}' is not heuristic or timed", "Unset it (tactics timed, the default), or pass --tactics timed|heuristic."),
    };

    public CudnnHandle PlanningCudnn => _cudnn ??= Startup.Measure("plan_cudnn_handle", () => Cudnn.Create(_uploadStream));

    public CublasLtHandle PlanningCublasLt => _lt ??= Startup.Measure("plan_cublaslt_handle", CublasLt.Create);

    /// <summary>
    /// The threads that confirm stored convolution choices at a new shape beside a plan's lowering
    /// (BATCHWISE_PLAN_THREADS), started the first time a plan has such a choice to confirm (never in the session's first
    /// plan, which asks the heuristics); asked only by builds, which run one at a time.
    /// </summary>
    public ConvQueryPool? ConvQueries
    {
        get
        {
            if (!_convQueriesStarted)
            {
                _convQueriesStarted = true;
                _convQueries = ConvQueryPool.Start(CudaDriver.CurrentContext(), PlanThreads);
            }

            return _convQueries;
        }
    }

    private ConvQueryPool? _convQueries;
    private bool _convQueriesStarted;

    /// <summary>How many threads <see cref="ConvQueries"/> gets (BATCHWISE_PLAN_THREADS); set before that starts (tests).</summary>
    public int PlanThreads { get; internal set; } = ConvQueryPool.ThreadsFromEnvironment();

    /// <summary>
    /// The timing cache when tactics are timed (<see cref="TimesTactics"/>: the default); null with --tactics heuristic.
    /// Candidates are timed inside a captured CUDA graph: timed one call at a time, the winners of small problems were
    /// the ones with the least host cost and ran slower inside the graph (bench/results/cuda-part2-h100.md).
    /// </summary>
    public TimingCache? Tactics => TimesTactics(_tactics) ? DeviceTimings : null;

    /// <inheritdoc/>
    public TimingCache? Int8GraphTimings => DeviceTimings;

    private TimingCache DeviceTimings => _timingCache ??= TimingCache.ForDevice(CacheDirectory.Root, CudaDriver.DeviceName(_device), ComputeCapability, Cudnn.Version() + "-cublaslt" + CublasLt.Version());

    public T Derive<T>(string recipe, IReadOnlyList<HostTensor?> sources, Func<T> make)
        where T : class => _constants.Derive(recipe, sources, make);

    /// <summary>Independent branches on two streams (BATCHWISE_BRANCHES, read once per session; on unless set off).</summary>
    public bool ConcurrentBranches { get; } = StepLanes.EnabledFromEnvironment;

    /// <summary>Where compiled kernels are kept between processes: $BATCHWISE_CACHE_DIR/cuda/kernels (BATCHWISE_KERNEL_CACHE=off keeps none).</summary>
    private static string? KernelCacheDirectory() =>
        Environment.GetEnvironmentVariable("BATCHWISE_KERNEL_CACHE")?.Trim().ToLowerInvariant() is "off" or "0" or "false"
            ? null
            : Path.Combine(CacheDirectory.Root, "kernels");

    private List<int> CheckProfiles(IReadOnlyList<int> profiles)
    {
        if (profiles.Count == 0)
        {
            return [];
        }

        if (profiles.Any(p => p < 1))
        {
            throw new BatchwiseException($"Batch profile {profiles.First(p => p < 1)} is not a batch size", "Give batch profiles as positive sizes, e.g. --batch-profile 1,8,32,64.");
        }

        if (!_batchAxis.IsBatchable)
        {
            throw new BatchwiseException($"Batch profiles need a batch axis, and '{_model.Name}' has none: {_batchAxis.Reason}", "Drop --batch-profile, or re-export the model with a dynamic first dimension.");
        }

        // Padded rows are cut off each output's first axis: every output must carry the batch there.
        var unbatched = Outputs.FirstOrDefault(o => o.Shape.Count == 0 || !o.Shape[0].IsDynamic);
        if (unbatched is not null)
        {
            throw new BatchwiseException($"Batch profiles need every output to carry the batch axis first; output '{unbatched.Name}' is {unbatched.ShapeText}", "Drop --batch-profile (each batch size then gets its own plan), or export the output with a dynamic first dimension.");
        }

        return [.. profiles.Distinct().Order()];
    }

    public IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var run = (CudaPreparedRun)Prepare(inputs);
        run.Run();
        return run.ReadOutputs();
    }

    public IPreparedRun Prepare(IReadOnlyList<Tensor> inputs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count != Inputs.Count)
        {
            throw new BatchwiseException($"The model takes {Inputs.Count} inputs ({string.Join(", ", Inputs.Select(i => i.Name))}); {inputs.Count} given", "Pass one tensor per input.");
        }

        _context.MakeCurrent();
        CheckShapeProfiles([.. inputs.Select(t => t.Shape)]);

        var rows = -1;
        if (ProfileFor([.. inputs.Select(t => t.Shape)]) is { } profile)
        {
            rows = (int)inputs[0].Shape[0];
            inputs = PadRows(inputs, profile);
        }

        var plan = PlanFor(ShapeKey(inputs), () => inputs);
        if (plan.StopsForCount && IncludeTransfers)
        {
            throw new BatchwiseException($"Timing transfers (--transfers) is not supported for models with data-dependent shapes on the cuda engine yet ({plan.SyncNodes[0]} synchronises with the host)", "Bench without --transfers.");
        }

        return OnSlot(plan, (slot, context) => new CudaPreparedRun(this, plan, slot, context, inputs, rows));
    }

    /// <inheritdoc/>
    public void WarmUp(Func<IReadOnlyList<long[]>, IReadOnlyList<Tensor>> inputsFor, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(inputsFor);

        // Largest batch first: the slots' arenas are sized once, for the largest plan.
        var all = WarmUpShapes;
        for (var i = 0; i < all.Count; i++)
        {
            var started = Stopwatch.GetTimestamp();
            var builds = Builds.Count;
            using (var run = (CudaPreparedRun)Prepare(inputsFor(all[i])))
            {
                run.Run();
                run.Run(); // the second run captures the CUDA graph
            }

            var build = Builds.Skip(builds).FirstOrDefault();
            progress?.Report(string.Create(CultureInfo.InvariantCulture,
                $"warm-up {i + 1}/{all.Count} {string.Join(", ", all[i].Select(Tensor.ShapeText))}: plan {(build is null ? "existed" : $"built in {build.Seconds * 1000:F1} ms ({build.KernelsCompiled} kernels compiled; {string.Join(", ", build.Phases.Concat(build.Details).Where(p => p.Value >= 0.0005).Select(p => p.Key + " " + (p.Value * 1000).ToString("F1", CultureInfo.InvariantCulture)))})")}, two runs, {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms in all"));
        }

        // The segment copy of staged runs (a served batch's rows in CUDA shared memory) is ready before the first such batch.
        if (RowsByKernel && _hostInputs.Count == 0 && !DataDependent)
        {
            _context.MakeCurrent();
            _ = CopySegmentsFunction;
        }
    }

    private Dictionary<string, ShapeProfile> CheckShapeProfiles(IReadOnlyList<ShapeProfile> profiles)
    {
        var byName = new Dictionary<string, ShapeProfile>(StringComparer.Ordinal);
        foreach (var p in profiles)
        {
            var spec = Inputs.FirstOrDefault(i => i.Name == p.Input)
                ?? throw new BatchwiseException($"--shape-profile names input '{p.Input}', which '{_model.Name}' does not have", $"Its inputs: {string.Join(", ", Inputs.Select(i => i.ToString()))}.");
            if (spec.Shape.Count != p.Min.Length)
            {
                throw new BatchwiseException($"--shape-profile {p.Text} has rank {p.Min.Length}; input '{spec.Name}' is {spec.ShapeText}", "Give every dimension of the input, e.g. " + ShapeProfile.Syntax + ".");
            }

            for (var d = _batchAxis.IsBatchable ? 1 : 0; d < p.Min.Length; d++)
            {
                if (spec.Shape[d].Value is { } fixedSize && (p.Min[d] != fixedSize || p.Max[d] != fixedSize))
                {
                    throw new BatchwiseException($"--shape-profile {p.Text}: dimension {d} of input '{spec.Name}' is fixed at {fixedSize} in the model", $"Give it as {fixedSize} in MIN and MAX.");
                }
            }

            if (!byName.TryAdd(p.Input, p))
            {
                throw new BatchwiseException($"Input '{p.Input}' has two shape profiles", "Give one --shape-profile per input.");
            }
        }

        return byName;
    }

    /// <summary>The profile a batch runs padded to, or null when it runs at its own size.</summary>
    private int? ProfileFor(IReadOnlyList<long[]> shapes)
    {
        // Padding rows would change a data-dependent node's count (NonZero sees the padded zeros): such models run at their own size.
        if (BatchProfiles.Count == 0 || shapes.Count == 0 || _hostInputs.Count > 0 || DataDependent || shapes.Any(s => s.Length == 0))
        {
            return null;
        }

        var batch = shapes[0][0];
        if (shapes.Any(s => s[0] != batch) || BatchProfiles.Contains((int)batch) || batch > BatchProfiles[^1])
        {
            return null;
        }

        // An exact plan built earlier (a profile-less run, or a saved one) is used as it is.
        if (_plans.TryGetValue(ShapeKeyOf(shapes), out var exact) && exact.IsValueCreated)
        {
            return null;
        }

        if (_exactPlans)
        {
            BuildInBackground(shapes);
        }

        return BatchProfiles.First(p => p >= batch);
    }

    /// <summary>
    /// Starts, once per shape, the build of the exact plan of a batch that runs padded (--exact-plans): runs go on padded
    /// until <see cref="ProfileFor"/> sees the plan made, so none waits for it. A failed build is reported, not retried.
    /// </summary>
    private void BuildInBackground(IReadOnlyList<long[]> shapes)
    {
        var key = ShapeKeyOf(shapes);
        if (_exactBuilds.ContainsKey(key))
        {
            return;
        }

        var own = shapes.Select(s => (long[])s.Clone()).ToArray();
        var build = new Task(() =>
        {
            try
            {
                _ = PlanFor(key, () => [.. own.Select((s, i) => Tensor.Zeros(Inputs[i].ElementType, s))]);
            }
            catch (Exception e)
            {
                BackgroundBuildFailed?.Invoke(key, e);
            }
        });
        lock (_exactBuilds)
        {
            // Dispose waits for the builds started before it (they use the session's handles) and none starts after.
            if (!_disposed && _exactBuilds.TryAdd(key, build))
            {
                build.Start(TaskScheduler.Default);
            }
        }
    }

    /// <summary>Exact plans started in the background so far (--exact-plans), finished or not.</summary>
    public int BackgroundBuilds => _exactBuilds.Count;

    /// <summary>True once inputs of these shapes have a plan of their own, built and ready to run.</summary>
    /// <summary>The int8 decisions of the plans built so far (node to "int8 ..." or the reason it runs in float).</summary>
    internal IReadOnlyDictionary<string, string> Int8Layers()
    {
        var all = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var plan in _plans.Values.Where(p => p.IsValueCreated))
        {
            foreach (var (node, how) in plan.Value.Int8Layers)
            {
                all[node] = how;
            }
        }

        return all;
    }

    public bool HasPlanFor(IReadOnlyList<long[]> shapes) => _plans.TryGetValue(ShapeKeyOf(shapes), out var plan) && plan.IsValueCreated;

    /// <summary>The plan key of inputs of these shapes (for models whose inputs give no host values).</summary>
    private string ShapeKeyOf(IReadOnlyList<long[]> shapes) =>
        string.Join(";", shapes.Select((s, i) => Inputs[i].Name + ":" + Inputs[i].ElementType.ShortName() + Tensor.ShapeText(s)));

    /// <summary>The device ordinal this session runs on.</summary>
    internal int DeviceOrdinal => _device;

    /// <inheritdoc/>
    public IDisposable? TryRegister(IntPtr pointer, long bytes, out string? failure)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return RegisteredHostMemory.TryRegister(_device, pointer, bytes, out failure);
    }

    /// <inheritdoc/>
    public IStagedRun Stage(IReadOnlyList<long[]> inputShapes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(inputShapes);
        if (_hostInputs.Count > 0 || DataDependent)
        {
            // Inputs whose values decide the plan (a shape given as a tensor), or outputs whose shapes are known only once
            // run (a data-dependent node), go through the ordinary path.
            return new ManagedStagedRun(this, inputShapes);
        }

        if (inputShapes.Count != Inputs.Count)
        {
            throw new BatchwiseException($"The model takes {Inputs.Count} inputs ({string.Join(", ", Inputs.Select(i => i.Name))}); {inputShapes.Count} given", "Pass one shape per input.");
        }

        _context.MakeCurrent();
        CheckShapeProfiles(inputShapes);

        var rows = -1;
        var shapes = inputShapes;
        if (ProfileFor(inputShapes) is { } profile)
        {
            rows = (int)inputShapes[0][0];
            shapes = [.. inputShapes.Select(s => (long[])[profile, .. s[1..]])];
        }

        var plan = PlanFor(ShapeKeyOf(shapes), () => [.. shapes.Select((s, i) => Tensor.Zeros(Inputs[i].ElementType, s))]);
        return OnLane(plan, (slot, lane, context) => new CudaStagedRun(this, plan, slot, lane, context, inputShapes, rows));
    }

    /// <summary>Execution slots (streams) the session has made so far.</summary>
    internal int SlotCount => _slots.All.Count;

    /// <summary>A run of <paramref name="plan"/> made by <paramref name="make"/> on a whole slot rented from the pool (returned to it if making fails).</summary>
    private T OnSlot<T>(ExecutionPlan plan, Func<ExecutionSlot, Planning.ExecutionContext, T> make)
    {
        if (!_slots.TryTakeWhole(out var slot))
        {
            slot = NewSlot();
            _slots.AddHeld(slot, whole: true);
        }

        try
        {
            return make(slot, slot.ContextFor(plan, _useCudaGraph, Interlocked.Read(ref _largestArena)));
        }
        catch
        {
            _slots.ReturnWhole(slot);
            throw;
        }
    }

    /// <summary>
    /// A staged run of <paramref name="plan"/> made by <paramref name="make"/> on a lane of a slot: an idle slot's own, or
    /// with a pipeline depth above 1 a companion lane of a busy slot (same stream, own staging and completion event), or a
    /// new slot. A companion whose plan would need the shared arena replaced is given back for a new slot (see
    /// <see cref="ExecutionSlot.TryContextFor"/>). The lane goes back to the pool if making fails.
    /// </summary>
    private T OnLane<T>(ExecutionPlan plan, Func<ExecutionSlot, int, Planning.ExecutionContext, T> make)
    {
        var arena = Interlocked.Read(ref _largestArena);
        if (_slots.TryTakeLane(out var shared, out var lane))
        {
            Planning.ExecutionContext? context;
            try
            {
                context = shared.TryContextFor(plan, _useCudaGraph, arena, () => _slots.Held(shared) == 1);
            }
            catch
            {
                _slots.ReturnLane(shared, lane);
                throw;
            }

            if (context is not null)
            {
                return MakeOnLane(shared, lane, context, make);
            }

            _slots.ReturnLane(shared, lane);
        }

        var slot = NewSlot();
        _slots.AddHeld(slot, whole: false);
        Planning.ExecutionContext own;
        try
        {
            own = slot.ContextFor(plan, _useCudaGraph, arena);
        }
        catch
        {
            _slots.ReturnLane(slot, 0);
            throw;
        }

        return MakeOnLane(slot, 0, own, make);
    }

    private T MakeOnLane<T>(ExecutionSlot slot, int lane, Planning.ExecutionContext context, Func<ExecutionSlot, int, Planning.ExecutionContext, T> make)
    {
        try
        {
            return make(slot, lane, context);
        }
        catch
        {
            _slots.ReturnLane(slot, lane);
            throw;
        }
    }

    /// <summary>A new execution slot (the session's first one timed for the cold start).</summary>
    private ExecutionSlot NewSlot()
    {
        var started = Stopwatch.GetTimestamp();
        var first = !Startup.Has("slot_stream");
        var slot = new ExecutionSlot { Spans = first ? Startup : null };
        if (first)
        {
            Startup.AddOnce("slot_stream", Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        return slot;
    }

    /// <summary>Refuses, with the reason, an input shape outside its shape profile.</summary>
    private void CheckShapeProfiles(IReadOnlyList<long[]> shapes)
    {
        for (var i = 0; i < shapes.Count; i++)
        {
            if (ShapeProfiles.TryGetValue(Inputs[i].Name, out var sp) && sp.Check(shapes[i], _batchAxis.IsBatchable) is { } why)
            {
                throw new BatchwiseException(why, "Resize or pad the input onto the profile's grid, or build with a wider --shape-profile.");
            }
        }
    }

    /// <summary>The inputs with zero rows appended up to <paramref name="rows"/> along the batch axis.</summary>
    private static Tensor[] PadRows(IReadOnlyList<Tensor> inputs, int rows)
    {
        var padded = new Tensor[inputs.Count];
        for (var i = 0; i < inputs.Count; i++)
        {
            var t = inputs[i];
            var shape = (long[])t.Shape.Clone();
            shape[0] = rows;
            var p = Tensor.Zeros(t.ElementType, shape);
            t.Data.AsSpan().CopyTo(p.Data);
            padded[i] = p;
        }

        return padded;
    }

    private string ShapeKey(IReadOnlyList<Tensor> inputs) =>
        string.Join(";", inputs.Select((t, i) => Inputs[i].Name + ":" + t.ElementType.ShortName() + Tensor.ShapeText(t.Shape) + (_hostInputs.Contains(Inputs[i].Name) ? "=" + string.Join(",", t.ToDoubles().Select(d => d.ToString("R", CultureInfo.InvariantCulture))) : string.Empty)));

    public DeviceSample? SampleDevice()
    {
        try
        {
            var device = Nvml.DeviceByPciBusId(_busId, _device);
            var u = Nvml.UtilizationOf(device);
            var m = Nvml.MemoryOf(device);
            return new DeviceSample(u.Gpu, (long)m.Used, (long)m.Total, Optional(() => Nvml.SmClockOf(device)), Optional(() => Nvml.PowerOf(device)),
                Optional(() => Nvml.ClockLimitsOf(device)) is { } limits ? DeviceClockLimit.Names(limits) : null);
        }
        catch (BatchwiseException)
        {
            // No NVML (some containers): fall back to the driver's memory numbers, utilisation unknown.
            _context.MakeCurrent();
            var (free, total) = CudaDriver.MemoryInfo();
            return new DeviceSample(double.NaN, total - free, total);
        }
    }

    internal void MakeCurrent() => _context.MakeCurrent();

    /// <summary>A reading NVML may refuse (no permission in a container, a field the device lacks): null then, the sample kept.</summary>
    private static T? Optional<T>(Func<T?> read)
        where T : struct
    {
        try
        {
            return read();
        }
        catch (BatchwiseException)
        {
            return null;
        }
    }

    /// <summary>
    /// Notes a run's times for the cold start: the session's first run (host time to enqueue it step by step, GPU time,
    /// wall time with the wait) and the first CUDA graph's capture and first launch (the run after it).
    /// </summary>
    internal void NoteRun(Planning.ExecutionContext context, double gpuSeconds, double wallSeconds)
    {
        if (!Startup.Has("first_run_wall"))
        {
            Startup.AddOnce("first_run_enqueue", context.LastEnqueueSeconds);
            foreach (var (kind, seconds) in context.FirstEnqueueByKind.OrderByDescending(p => p.Value))
            {
                Startup.AddOnce("first_run_enqueue_" + kind, seconds);
            }

            Startup.AddOnce("first_run_gpu", gpuSeconds);
            Startup.AddOnce("first_run_wall", wallSeconds);
        }
        else if (context.CaptureSeconds > 0 && !Startup.Has("after_first_graph_capture"))
        {
            Startup.AddOnce("after_first_graph_capture", context.CaptureSeconds);
            Startup.AddOnce("after_first_graph_launch", context.LastEnqueueSeconds);
            Startup.AddOnce("after_first_graph_gpu", gpuSeconds);
        }
    }

    /// <summary>Gives back a slot a prepared run held whole.</summary>
    internal void Return(ExecutionSlot slot)
    {
        if (_disposed)
        {
            return; // disposed with the session
        }

        _slots.ReturnWhole(slot);
    }

    /// <summary>Gives back lane <paramref name="lane"/> of <paramref name="slot"/>, once its run's work on the stream has completed.</summary>
    internal void ReturnLane(ExecutionSlot slot, int lane)
    {
        if (_disposed)
        {
            return; // disposed with the session
        }

        _slots.ReturnLane(slot, lane);
    }

    /// <summary>The plan for these inputs: built once (only runs that need it wait for it), then shared.</summary>
    private ExecutionPlan PlanFor(string key, Func<IReadOnlyList<Tensor>> inputs)
    {
        var lazy = _plans.GetOrAdd(key, k => new Lazy<ExecutionPlan>(() => Build(k, inputs()), LazyThreadSafetyMode.ExecutionAndPublication));
        try
        {
            return lazy.Value;
        }
        catch
        {
            _plans.TryRemove(new KeyValuePair<string, Lazy<ExecutionPlan>>(key, lazy)); // a failed build is tried again next time
            throw;
        }
    }

    /// <summary>
    /// The plan for the rest of the graph after <paramref name="parent"/> stopped at a data-dependent node whose count
    /// is <paramref name="count"/>: built once per count and kept (up to <see cref="MaxContinuationPlans"/> in the
    /// session); past that bound it is built for this run only (<c>Transient</c>: the caller disposes it).
    /// </summary>
    internal (ExecutionPlan Plan, bool Transient) Continuation(ExecutionPlan parent, long count, IReadOnlyList<Tensor> inputs)
    {
        IReadOnlyList<long> counts = [.. parent.Counts, count];
        var key = parent.Key + " nonzero=" + string.Join(",", counts);
        if (parent.Transient)
        {
            return (Build(key, inputs, counts, parent, record: false), true); // the rest of a plan built for one run is too
        }

        if (!parent.Continuations.TryGetValue(count, out var lazy))
        {
            if (Interlocked.Increment(ref _continuationPlans) > MaxContinuationPlans)
            {
                Interlocked.Decrement(ref _continuationPlans);
                return (Build(key, inputs, counts, parent, record: false), true);
            }

            var made = new Lazy<ExecutionPlan>(() => Build(key, inputs, counts, parent), LazyThreadSafetyMode.ExecutionAndPublication);
            lazy = parent.Continuations.GetOrAdd(count, made);
            if (!ReferenceEquals(lazy, made))
            {
                Interlocked.Decrement(ref _continuationPlans);
            }
        }

        try
        {
            return (lazy.Value, false);
        }
        catch
        {
            if (parent.Continuations.TryRemove(new KeyValuePair<long, Lazy<ExecutionPlan>>(count, lazy)))
            {
                Interlocked.Decrement(ref _continuationPlans); // a failed build is tried again next time
            }

            throw;
        }
    }

    private ExecutionPlan Build(string key, IReadOnlyList<Tensor> inputs, IReadOnlyList<long>? counts = null, ExecutionPlan? parent = null, bool record = true)
    {
        // Builds run one at a time (they share the planning cuDNN and cuBLASLt handles); runs never take this lock.
        lock (_build)
        {
            _context.MakeCurrent();
            var started = Stopwatch.GetTimestamp();
            var (compiled, loaded, compileSeconds) = (Kernels.Compiled, Kernels.Loaded, Kernels.CompileSeconds);
            var weightsBefore = _constants.WeightSeconds;
            var compiler = new GraphCompiler(_model, this, _graphFacts);
            var plan = compiler.Compile(inputs, _initializers, _hostInputs, counts, parent);
            plan.Key = key;
            var graphDone = Stopwatch.GetTimestamp();
            var weightsInGraph = _constants.WeightSeconds - weightsBefore;
            double kernelSeconds, constantSeconds, weightsInConstants;
            var details = new Dictionary<string, double>(compiler.LibraryDetails, StringComparer.Ordinal);
            try
            {
                Kernels.Resolve(plan.Steps.OfType<KernelStep>());
                plan.Gate = Kernels.Gate;
                var kernelsDone = Stopwatch.GetTimestamp();
                kernelSeconds = Stopwatch.GetElapsedTime(graphDone, kernelsDone).TotalSeconds;
                var weightsBeforeUpload = _constants.WeightSeconds;
                UploadConstants(plan, details);
                constantSeconds = Stopwatch.GetElapsedTime(kernelsDone).TotalSeconds;
                weightsInConstants = _constants.WeightSeconds - weightsBeforeUpload;
                _timingCache?.Save();
            }
            catch
            {
                plan.Dispose();
                throw;
            }

            InterlockedMax(ref _largestArena, plan.Memory.ArenaBytes);
            var graphSeconds = Stopwatch.GetElapsedTime(started, graphDone).TotalSeconds;
            var shown = plan.StopsForCount ? $"{key} (stops at {plan.SyncNodes[^1]} for a host synchronisation: its count is read back and the rest runs under a plan per count)" : key;
            var build = new PlanBuild(shown, Stopwatch.GetElapsedTime(started).TotalSeconds, Kernels.Compiled - compiled, Kernels.Loaded - loaded, Kernels.CompileSeconds - compileSeconds, plan.Steps.Count)
            {
                Phases = new Dictionary<string, double>(StringComparer.Ordinal)
                {
                    // Host work on weights (decode, BN fold, reorder, conversion to the stored type) apart from the
                    // graph work and the uploads it happens within: a saved engine with processed weights has none.
                    ["graph"] = graphSeconds - compiler.LibrarySeconds - weightsInGraph,
                    ["library_queries"] = compiler.LibrarySeconds,
                    ["kernels"] = kernelSeconds,
                    ["weights"] = weightsInGraph + weightsInConstants,
                    ["constants"] = constantSeconds - weightsInConstants,
                },
                Details = details,
                SideSteps = plan.Lanes?.SideSteps ?? 0,
                ProgrammaticKernels = plan.Steps.Count(s => s is KernelStep k && k.LaunchesProgrammatically(plan.ProgrammaticLaunch)),
            };
            plan.EarlyWarmUp = _earlyWarmUp;
            plan.L2SetAside = L2SetAside;
            if (!Startup.Has("plan_graph"))
            {
                // The session's first plan: its stages are part of the cold start, and its first run makes cuDNN's first
                // calls on several threads (libraries' lazy loading; later plans find the kernels loaded).
                plan.WarmConvolutionsFirst = true;
                foreach (var (phase, seconds) in build.Phases.Concat(build.Details))
                {
                    Startup.AddOnce("plan_" + phase, seconds);
                }
            }

            if (!record)
            {
                plan.Transient = true;
                return plan;
            }

            lock (_builds)
            {
                _builds.Add(build);
            }

            PlanBuilt?.Invoke(build);
            return plan;
        }
    }

    private static void InterlockedMax(ref long target, long value)
    {
        var current = Interlocked.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }

    /// <summary>Uploads the plan's constants; session-owned ones (weights and what derives from them) once per session.</summary>
    private unsafe void UploadConstants(ExecutionPlan plan, Dictionary<string, double> details)
    {
        long bytesTicks = 0, allocTicks = 0, copyTicks = 0, uploaded = 0;
        foreach (var b in plan.Buffers.Where(b => !b.IsArena))
        {
            var t = b.Constant!;
            if (t.IsInitializer && _weights.TryGetValue((t, b.StorageType), out var shared))
            {
                plan.ConstantPointers[b.Id] = shared.Pointer;
                continue;
            }

            // A saved engine's device-ready bytes where it has them (no decode, fold, reorder or conversion here).
            var started = Stopwatch.GetTimestamp();
            var bytes = _constants.SavedBytes(t, b.StorageType) ?? _constants.MeasureWeightWork(() => StorageBytes(t, b.StorageType));
            var allocating = Stopwatch.GetTimestamp();
            var memory = CudaDriver.Allocate(Math.Max(1, bytes.Length));
            var copying = Stopwatch.GetTimestamp();
            fixed (byte* p = bytes.Span)
            {
                CudaDriver.CopyToDevice(memory.Pointer, p, bytes.Length, _uploadStream);
                CudaDriver.Synchronize(_uploadStream);
            }

            (bytesTicks, allocTicks, copyTicks, uploaded) = (bytesTicks + allocating - started, allocTicks + copying - allocating, copyTicks + Stopwatch.GetTimestamp() - copying, uploaded + bytes.Length);

            if (t.IsInitializer)
            {
                _weights[(t, b.StorageType)] = memory;
            }
            else
            {
                plan.Own(memory);
            }

            plan.ConstantPointers[b.Id] = memory.Pointer;
        }

        if (uploaded > 0)
        {
            details["constants_bytes"] = bytesTicks / (double)Stopwatch.Frequency;
            details["constants_alloc"] = allocTicks / (double)Stopwatch.Frequency;
            details["constants_copy"] = copyTicks / (double)Stopwatch.Frequency;
        }
    }

    /// <summary>
    /// The session's processed weights for a saved engine: every derived value's form, and the device bytes of every
    /// session constant uploaded so far (the saved ones as loaded, the others as the device stores them).
    /// </summary>
    public (byte[] Index, byte[] Blob) SaveConstants()
    {
        var uploads = new List<(string, ElementType, ReadOnlyMemory<byte>)>();
        foreach (var (t, storage) in _weights.Keys)
        {
            if (_constants.NameOf(t) is { } name)
            {
                uploads.Add((name, storage, _constants.SavedBytes(t, storage) ?? StorageBytes(t, storage)));
            }
        }

        return SavedConstants.Write(_constants.Derivations, uploads);
    }

    /// <summary>Derived session constants given by a saved engine (values deferred) and made here (recipe run).</summary>
    public (int Reused, int Made) DerivedConstants => (_constants.Reused, _constants.Made);

    /// <summary>
    /// A constant's bytes as the device stores it: float weights straight to float32 or float16 in parallel chunks (a
    /// large model's weights are converted once, when its first plan is built); anything else through the host tensor's
    /// own conversion. A wider float stored as float16 saturates at ±65504 (<see cref="ToHalfStorage"/>).
    /// </summary>
    internal static byte[] StorageBytes(HostTensor t, ElementType storage)
    {
        if (!t.IsFloat || storage is not (ElementType.Float or ElementType.Float16) || storage == t.Type)
        {
            return (storage == t.Type ? t : t.CastTo(storage)).ToBytes();
        }

        var values = t.Floats!;
        var bytes = new byte[values.Length * storage.SizeOf()];
        const int Chunk = 1 << 16;
        Parallel.For(0, (values.Length + Chunk - 1) / Chunk, c =>
        {
            var start = c * Chunk;
            var end = Math.Min(values.Length, start + Chunk);
            if (storage == ElementType.Float16)
            {
                var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
                for (var i = start; i < end; i++)
                {
                    dst[i] = ToHalfStorage(values[i]);
                }
            }
            else
            {
                var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan());
                for (var i = start; i < end; i++)
                {
                    dst[i] = (float)values[i];
                }
            }
        });
        return bytes;
    }

    /// <summary>
    /// A float32 constant as the fp16 engine stores it: finite values beyond float16's range saturate at ±65504 (as ONNX
    /// Runtime's float16 converter clips them) instead of rounding to infinity. Exports fill masks with float32's lowest
    /// value (-3.4e38, Hugging Face's masked_fill); as -inf, a fully masked softmax row becomes NaN (-inf minus -inf), as
    /// -65504 it stays finite. Infinities and NaN stay what they are.
    /// </summary>
    internal static Half ToHalfStorage(double v) => double.IsFinite(v) ? (Half)Math.Clamp(v, -65504.0, 65504.0) : (Half)v;

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        lock (_exactBuilds)
        {
            _disposed = true;
        }

        // A background build still running holds the session's handles: let it finish (it never waits on a run); the
        // early warm-up's threads use the context.
        Task.WaitAll([.. _exactBuilds.Values], TimeSpan.FromMinutes(2));
        _earlyWarmUp?.Wait();
        _context.MakeCurrent();
        foreach (var slot in _slots.All)
        {
            slot.Dispose();
        }

        foreach (var p in _plans.Values.Where(l => l.IsValueCreated))
        {
            p.Value.Dispose();
        }

        foreach (var w in _weights.Values)
        {
            w.Dispose();
        }

        _convQueries?.Dispose();
        Kernels.Dispose();
        _cudnn?.Dispose();
        _lt?.Dispose();
        _uploadStream.Dispose();
        _context.Dispose();
    }
}

/// <summary>
/// Inputs bound on the device for repeated runs at one shape; the outputs are read back on demand. A run padded to a
/// batch profile reads back only its own rows.
/// </summary>
internal sealed unsafe partial class CudaPreparedRun : IPreparedRun, ILayerProfiling, IQueuedRuns
{
    private readonly CudaSession _session;
    private readonly ExecutionPlan _root;
    private readonly ExecutionSlot _slot;
    private readonly IReadOnlyList<Tensor> _inputs;
    private readonly int _rows;
    private readonly List<(ExecutionPlan Plan, Planning.ExecutionContext Context)> _segments = [];
    private readonly List<(ExecutionPlan Plan, Planning.ExecutionContext Context)> _transient = [];
    private Planning.ExecutionContext _rootContext;
    private IReadOnlyList<Tensor>? _outputs;
    private bool _disposed;

    /// <param name="rows">The caller's batch when the inputs were padded to a profile (outputs are cut to it); -1 otherwise.</param>
    public CudaPreparedRun(CudaSession session, ExecutionPlan plan, ExecutionSlot slot, Planning.ExecutionContext context, IReadOnlyList<Tensor> inputs, int rows)
    {
        _session = session;
        _root = plan;
        _slot = slot;
        _rootContext = context;
        _inputs = inputs;
        _rows = rows;
        if (session.IncludeTransfers)
        {
            context.StageInputs(inputs);
            return;
        }

        UploadInputs();
    }

    /// <summary>The plan whose outputs this run reads: the root plan, or the last segment's after data-dependent nodes.</summary>
    private ExecutionPlan CurrentPlan => _segments.Count == 0 ? _root : _segments[^1].Plan;

    /// <summary>The context of <see cref="CurrentPlan"/> on this run's slot.</summary>
    private Planning.ExecutionContext CurrentContext => _segments.Count == 0 ? _rootContext : _segments[^1].Context;

    /// <summary>The run's graph as the GPU tests see it: replayed or not, why capture was given up, the L2 window its kernels got.</summary>
    internal (bool UsesGraph, string? Problem, L2Window? Window) Graph => (CurrentContext.UsesGraph, CurrentContext.GraphProblem, CurrentContext.L2Window);

    private void UploadInputs()
    {
        for (var i = 0; i < _inputs.Count; i++)
        {
            var buffer = _root.InputBuffers[i];
            if (buffer < 0 || _inputs[i].Data.Length == 0)
            {
                continue;
            }

            fixed (byte* p = _inputs[i].Data)
            {
                CudaDriver.CopyToDevice(_rootContext.Pointer(buffer), p, _inputs[i].Data.Length, _rootContext.Stream);
            }
        }

        CudaDriver.Synchronize(_rootContext.Stream);
    }

    /// <summary>
    /// A run of a plan split at data-dependent nodes: the first segment runs, the host reads the count it stops at (an
    /// 8-byte copy and a stream synchronisation), the plan for the rest at that count (built once per count) resumes on
    /// the same arena, and so on to the outputs. Each segment replays as its own CUDA graph once captured. Should a new
    /// plan need a larger arena than the slot has, the slot's arena is replaced and the run starts again in the new one.
    /// </summary>
    private double RunSegments()
    {
        for (var attempt = 0; ; attempt++)
        {
            DropSegments();
            var generation = _slot.ArenaGeneration;
            var seconds = _rootContext.Run();
            var (plan, context) = (_root, _rootContext);
            var moved = false;
            while (plan.StopsForCount)
            {
                long count;
                CudaDriver.CopyToHost(&count, context.Pointer(plan.CountBuffer), sizeof(long), context.Stream);
                CudaDriver.Synchronize(context.Stream);
                var (next, transient) = _session.Continuation(plan, count, _inputs);
                var nextContext = _slot.ContextFor(next, _session.UseCudaGraph && !transient, _session.LargestArena, keep: !transient);
                if (transient)
                {
                    _transient.Add((next, nextContext));
                }

                _segments.Add((next, nextContext));
                if (_slot.ArenaGeneration != generation)
                {
                    moved = true;
                    break;
                }

                seconds += nextContext.Run();
                (plan, context) = (next, nextContext);
            }

            if (!moved)
            {
                return seconds;
            }

            // The arena grew for the new plan: the segments run so far (and the inputs) went with the old one.
            if (attempt >= 8)
            {
                throw new InvalidOperationException("the arena kept growing while running a plan split at data-dependent nodes");
            }

            DropSegments();
            _rootContext = _slot.ContextFor(_root, _session.UseCudaGraph, _session.LargestArena);
            UploadInputs();
        }
    }

    /// <summary>Forgets the segments of the last run (disposing those built for it alone).</summary>
    private void DropSegments()
    {
        _segments.Clear();
        foreach (var (plan, context) in _transient)
        {
            context.Dispose();
            plan.Dispose();
        }

        _transient.Clear();
    }

    public double Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _session.MakeCurrent();
        _outputs = null;
        if (_root.StopsForCount)
        {
            return RunSegments();
        }

        if (_session.IncludeTransfers)
        {
            return RunWithTransfers();
        }

        return RunCurrent(1);
    }

    /// <summary><paramref name="runs"/> runs of the current context back to back (one: <see cref="Run"/>), noted per run as the session's first where it is.</summary>
    private double RunCurrent(int runs)
    {
        var started = Stopwatch.GetTimestamp();
        var context = CurrentContext;
        var seconds = context.RunQueued(runs);
        _session.NoteRun(context, seconds / runs, Stopwatch.GetElapsedTime(started).TotalSeconds / runs);
        return seconds;
    }

    /// <summary>
    /// Runs back to back on the slot's stream (<see cref="Planning.ExecutionContext.RunQueued"/>). Refused where a run
    /// waits for the host inside it: a plan split at data-dependent sizes reads a count between its segments, and runs
    /// with transfers stage host memory around each.
    /// </summary>
    public double RunQueued(int runs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_root.StopsForCount)
        {
            throw new BatchwiseException("--queue: this model's plan stops at a data-dependent size (NonZero, TopK by a computed k, ...) and reads it on the host within each run, so runs cannot be queued", "Drop --queue (each run waited for).");
        }

        if (_session.IncludeTransfers)
        {
            throw new BatchwiseException("--queue with --transfers: each run's copies go through the run's own page-locked staging, which the next run would overwrite while queued", "Drop --queue to time transfers, or --transfers to queue compute-only runs.");
        }

        _session.MakeCurrent();
        _outputs = null;
        return RunCurrent(runs);
    }

    public IReadOnlyList<LayerTime> ProfileLayers(int runs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _session.MakeCurrent();
        _outputs = null;
        LastTransferTimes = null;
        if (!_root.StopsForCount)
        {
            return CurrentContext.ProfileSteps(runs).Select(p => new LayerTime(p.Node, p.Milliseconds)).ToList();
        }

        // Split at data-dependent nodes: one run to find the segments, then each segment profiled in order (a segment's
        // steps read what the segments before it left in the arena).
        RunSegments();
        var times = _rootContext.ProfileSteps(runs).ToList();
        foreach (var (_, context) in _segments)
        {
            times.AddRange(context.ProfileSteps(runs));
        }

        return times.Select(p => new LayerTime(p.Node, p.Milliseconds)).ToList();
    }

    public IReadOnlyList<Tensor> ReadOutputs()
    {
        if (_outputs is not null)
        {
            return _outputs;
        }

        if (StagedOutputs() is { } staged)
        {
            _outputs = staged.Select(CutToRows).ToList();
            return _outputs;
        }

        _session.MakeCurrent();
        var result = new List<Tensor>();
        foreach (var o in CurrentPlan.Outputs)
        {
            if (o.Constant is not null)
            {
                result.Add(CutToRows(o.Constant.CastTo(o.Type).ToTensor()));
                continue;
            }

            // Padded to a profile: only the caller's rows come back.
            var shape = _rows >= 0 && o.Shape.Length > 0 ? [_rows, .. o.Shape[1..]] : o.Shape;
            var t = Tensor.Zeros(o.Type, shape);
            if (t.Data.Length > 0)
            {
                fixed (byte* p = t.Data)
                {
                    CudaDriver.CopyToHost(p, CurrentContext.Pointer(o.Buffer), t.Data.Length, CurrentContext.Stream);
                }
            }

            result.Add(t);
        }

        CudaDriver.Synchronize(CurrentContext.Stream);
        _outputs = result;
        return result;
    }

    /// <summary>The first <see cref="_rows"/> rows of a padded run's output; the output itself otherwise.</summary>
    private Tensor CutToRows(Tensor t)
    {
        if (_rows < 0 || t.Shape.Length == 0 || t.Shape[0] == _rows)
        {
            return t;
        }

        var shape = (long[])t.Shape.Clone();
        shape[0] = _rows;
        var cut = Tensor.Zeros(t.ElementType, shape);
        t.Data.AsSpan(0, cut.Data.Length).CopyTo(cut.Data);
        return cut;
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _session.MakeCurrent();
            DropSegments();
            _session.Return(_slot);
        }
    }
}
