using System.Collections.Concurrent;
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
            ["precision"] = options.Precision.ToString().ToLowerInvariant(),
            ["tf32"] = options.AllowTf32 ? "on" : "off",
            ["tactics"] = options.TimedTactics || !CudaSession.HeuristicTactics ? "timed" : "heuristic",
            ["cuda_graph"] = options.UseCudaGraph ? "on" : "off",
            ["transfers"] = options.IncludeTransfers ? "h2d+compute+d2h" : "off (compute only)",
        };
        return new EngineDescription(Name, typeof(CudaEngine).Assembly.GetName().Version?.ToString() ?? "0", info.Name, details);
    }

    /// <inheritdoc/>
    public IEngineSession Load(OnnxModel model, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Precision is not (Precision.Fp32 or Precision.Fp16))
        {
            throw new BatchwiseException($"--precision {options.Precision.ToString().ToLowerInvariant()} is not supported by the cuda engine", "Use --precision fp32 or fp16.");
        }

        // Validate before touching the GPU: an unsupported operator fails the same way on every machine.
        OperatorSupport.Validate(model);
        CudaDriver.Initialize();
        return new CudaSession(model, options);
    }
}

/// <summary>A model loaded on one GPU: its initializers, and one execution plan per set of input shapes.</summary>
internal sealed class CudaSession : IEngineSession, IPlanTarget
{
    private readonly OnnxModel _model;
    private readonly PrimaryContext _context;
    private readonly Dictionary<string, HostTensor> _initializers;
    private readonly HashSet<string> _hostInputs;
    private readonly Dictionary<string, ExecutionPlan> _plans = new(StringComparer.Ordinal);
    private readonly Dictionary<HostTensor, DeviceMemory> _weights = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<ExecutionPlan, ConcurrentBag<Planning.ExecutionContext>> _idle = new();
    private readonly CudaStream _uploadStream;
    private readonly int _device;
    private readonly string _busId;
    private CudnnHandle? _cudnn;
    private CublasLtObject? _lt;
    private TimingCache? _timingCache;
    private readonly bool _useCudaGraph;
    private readonly bool _timedTactics;
    private bool _disposed;

    public CudaSession(OnnxModel model, EngineOptions options)
    {
        _model = model;
        _device = CudaDriver.Device(options.DeviceId);
        _context = new PrimaryContext(_device);
        _context.MakeCurrent();
        ComputeCapability = (CudaDriver.Attribute(_device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10) + CudaDriver.Attribute(_device, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        _busId = CudaDriver.PciBusId(_device);
        AllowTf32 = options.AllowTf32;
        Precision = options.Precision;
        _useCudaGraph = options.UseCudaGraph;
        _timedTactics = options.TimedTactics;
        IncludeTransfers = options.IncludeTransfers;
        _uploadStream = CudaDriver.CreateStream();
        _initializers = model.Graph.Initializer.ToDictionary(t => t.Name, t =>
        {
            var h = HostTensor.FromProto(t);
            return new HostTensor(h.Type, h.Shape, h.Ints, h.Floats) { IsInitializer = true };
        }, StringComparer.Ordinal);
        _hostInputs = GraphCompiler.HostValueInputs(model);
        Inputs = model.Inputs;
        Outputs = model.Outputs;
    }

    public IReadOnlyList<TensorSpec> Inputs { get; }

    public IReadOnlyList<TensorSpec> Outputs { get; }

    public int ComputeCapability { get; }

    public bool AllowTf32 { get; }

    public Precision Precision { get; }

    /// <summary>Every prepared run copies its inputs up and its outputs back (bench --transfers).</summary>
    public bool IncludeTransfers { get; }

    internal static bool HeuristicTactics => Environment.GetEnvironmentVariable("BATCHWISE_CUDNN_ALGO")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "heuristic" => true,
        "timed" => false,
        var other => throw new BatchwiseException($"BATCHWISE_CUDNN_ALGO '{other}' is not heuristic or timed", "Unset it, or set BATCHWISE_CUDNN_ALGO=timed (as bench --timed-tactics does) to time cuDNN's and cuBLASLt's candidates when a plan is built."),
    };

    public CudnnHandle PlanningCudnn => _cudnn ??= Cudnn.Create(_uploadStream);

    public CublasLtObject PlanningCublasLt => _lt ??= CublasLt.Create();

    /// <summary>
    /// The timing cache when tactics are timed (<see cref="EngineOptions.TimedTactics"/>, or BATCHWISE_CUDNN_ALGO=timed for
    /// commands without --timed-tactics); by default null: cuDNN's and cuBLASLt's heuristics (on an H100 the timed winners
    /// were slower inside the CUDA-graph run at small batches: bench/results/cuda-part2-h100.md).
    /// </summary>
    public TimingCache? Tactics => HeuristicTactics && !_timedTactics ? null : _timingCache ??= TimingCache.ForDevice(TimingCache.DefaultDirectory(), CudaDriver.DeviceName(_device), ComputeCapability, Cudnn.Version() + "-cublaslt" + CublasLt.Version());

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
        var plan = PlanFor(inputs);
        var context = _idle.GetOrAdd(plan, _ => []).TryTake(out var idle) ? idle : new Planning.ExecutionContext(plan, _useCudaGraph);
        return new CudaPreparedRun(this, plan, context, inputs);
    }

    public DeviceSample? SampleDevice()
    {
        try
        {
            var device = Nvml.DeviceByPciBusId(_busId, _device);
            var u = Nvml.UtilizationOf(device);
            var m = Nvml.MemoryOf(device);
            return new DeviceSample(u.Gpu, (long)m.Used, (long)m.Total);
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

    internal void Return(ExecutionPlan plan, Planning.ExecutionContext context)
    {
        if (_disposed)
        {
            context.Dispose();
            return;
        }

        _idle.GetOrAdd(plan, _ => []).Add(context);
    }

    private ExecutionPlan PlanFor(IReadOnlyList<Tensor> inputs)
    {
        var key = string.Join(";", inputs.Select((t, i) => t.ElementType + Tensor.ShapeText(t.Shape) + (_hostInputs.Contains(Inputs[i].Name) ? "=" + string.Join(",", t.ToDoubles().Select(d => d.ToString("R", CultureInfo.InvariantCulture))) : string.Empty)));
        lock (_plans)
        {
            if (_plans.TryGetValue(key, out var plan))
            {
                return plan;
            }

            plan = new GraphCompiler(_model, this).Compile(inputs, _initializers, _hostInputs);
            try
            {
                CompileKernels(plan);
                UploadConstants(plan);
                _timingCache?.Save();
            }
            catch
            {
                plan.Dispose();
                throw;
            }

            _plans[key] = plan;
            return plan;
        }
    }

    private void CompileKernels(ExecutionPlan plan)
    {
        var kernels = plan.Steps.OfType<KernelStep>().ToList();

        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        var source = new System.Text.StringBuilder(KernelSource.Prelude);
        foreach (var k in kernels)
        {
            if (!names.TryGetValue(k.Source, out var name))
            {
                name = "bw_k" + names.Count.ToString(CultureInfo.InvariantCulture);
                names[k.Source] = name;
                source.Append(k.Source.Replace(KernelSource.Name, name, StringComparison.Ordinal)).Append('\n');
            }

            k.FunctionName = name;
        }

        var cubin = Nvrtc.CompileToCubin(source.ToString(), _model.Name + ".cu", ComputeCapability);
        var module = CudaDriver.LoadModule(cubin);
        plan.Own(module);
        plan.Gate = CudaDriver.GetFunction(module, KernelSource.GateKernel);
        var functions = names.Values.ToDictionary(n => n, n => CudaDriver.GetFunction(module, n), StringComparer.Ordinal);
        foreach (var k in kernels)
        {
            k.Function = functions[k.FunctionName];
        }
    }

    private unsafe void UploadConstants(ExecutionPlan plan)
    {
        foreach (var b in plan.Buffers.Where(b => !b.IsArena))
        {
            var t = b.Constant!;
            if (t.IsInitializer && _weights.TryGetValue(t, out var shared))
            {
                plan.ConstantPointers[b.Id] = shared.Pointer;
                continue;
            }

            var bytes = (b.StorageType == t.Type ? t : t.CastTo(b.StorageType)).ToBytes();
            var memory = CudaDriver.Allocate(bytes.Length);
            fixed (byte* p = bytes)
            {
                CudaDriver.CopyToDevice(memory.Pointer, p, bytes.Length, _uploadStream);
                CudaDriver.Synchronize(_uploadStream);
            }

            if (t.IsInitializer)
            {
                _weights[t] = memory;
            }
            else
            {
                plan.Own(memory);
            }

            plan.ConstantPointers[b.Id] = memory.Pointer;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _context.MakeCurrent();
        foreach (var bag in _idle.Values)
        {
            while (bag.TryTake(out var c))
            {
                c.Dispose();
            }
        }

        foreach (var p in _plans.Values)
        {
            p.Dispose();
        }

        foreach (var w in _weights.Values)
        {
            w.Dispose();
        }

        _cudnn?.Dispose();
        _lt?.Dispose();
        _uploadStream.Dispose();
        _context.Dispose();
    }
}

/// <summary>Inputs bound on the device for repeated runs at one shape; the outputs are read back on demand.</summary>
internal sealed unsafe partial class CudaPreparedRun : IPreparedRun, ILayerProfiling
{
    private readonly CudaSession _session;
    private readonly ExecutionPlan _plan;
    private readonly Planning.ExecutionContext _context;
    private IReadOnlyList<Tensor>? _outputs;
    private bool _disposed;

    public CudaPreparedRun(CudaSession session, ExecutionPlan plan, Planning.ExecutionContext context, IReadOnlyList<Tensor> inputs)
    {
        _session = session;
        _plan = plan;
        _context = context;
        if (session.IncludeTransfers)
        {
            context.StageInputs(inputs);
            return;
        }

        for (var i = 0; i < inputs.Count; i++)
        {
            var buffer = plan.InputBuffers[i];
            if (buffer < 0 || inputs[i].Data.Length == 0)
            {
                continue;
            }

            fixed (byte* p = inputs[i].Data)
            {
                CudaDriver.CopyToDevice(context.Pointer(buffer), p, inputs[i].Data.Length, context.Stream);
                CudaDriver.Synchronize(context.Stream);
            }
        }
    }

    public double Run()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _session.MakeCurrent();
        _outputs = null;
        return _session.IncludeTransfers ? RunWithTransfers() : _context.Run();
    }

    public IReadOnlyList<LayerTime> ProfileLayers(int runs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _session.MakeCurrent();
        _outputs = null;
        LastTransferTimes = null;
        return _context.ProfileSteps(runs).Select(p => new LayerTime(p.Node, p.Milliseconds)).ToList();
    }

    public IReadOnlyList<Tensor> ReadOutputs()
    {
        if (_outputs is not null)
        {
            return _outputs;
        }

        if (StagedOutputs() is { } staged)
        {
            _outputs = staged;
            return staged;
        }

        _session.MakeCurrent();
        var result = new List<Tensor>();
        foreach (var o in _plan.Outputs)
        {
            if (o.Constant is not null)
            {
                result.Add(o.Constant.CastTo(o.Type).ToTensor());
                continue;
            }

            var t = Tensor.Zeros(o.Type, o.Shape);
            if (t.Data.Length > 0)
            {
                fixed (byte* p = t.Data)
                {
                    CudaDriver.CopyToHost(p, _context.Pointer(o.Buffer), t.Data.Length, _context.Stream);
                    CudaDriver.Synchronize(_context.Stream);
                }
            }

            result.Add(t);
        }

        _outputs = result;
        return result;
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _session.Return(_plan, _context);
        }
    }
}
