using Batchwise.Onnx;

namespace Batchwise.Engines;

/// <summary>An inference engine: loads an ONNX model into a session. Bench, explain, serve and compare know only this.</summary>
public interface IEngine
{
    /// <summary>Short name used on the command line (ort, cuda).</summary>
    string Name { get; }

    /// <summary>What runs: engine and library versions, device name (recorded with every result).</summary>
    EngineDescription Describe(EngineOptions options);

    /// <summary>Loads a model; fails at load (not at run) on anything the engine cannot execute.</summary>
    IEngineSession Load(OnnxModel model, EngineOptions options);

    /// <summary>
    /// The options a model actually runs with: <paramref name="options"/>, or for a saved engine the precision and
    /// profiles it was built with (refusing options that contradict it). What reports record.
    /// </summary>
    EngineOptions Effective(OnnxModel model, EngineOptions options) => options;

    /// <summary>
    /// Starts, on another thread, what any session of these options will need before a model is read (a GPU engine:
    /// its driver and device context), so that it overlaps reading the model file. Optional; never throws (a failure
    /// shows where the session loads).
    /// </summary>
    void Prestart(EngineOptions options)
    {
    }
}

/// <summary>A loaded model. Thread-safe: several threads may run prepared executions at once.</summary>
public interface IEngineSession : IDisposable
{
    /// <summary>Graph inputs.</summary>
    IReadOnlyList<TensorSpec> Inputs { get; }

    /// <summary>Graph outputs.</summary>
    IReadOnlyList<TensorSpec> Outputs { get; }

    /// <summary>Runs one batch: inputs in <see cref="Inputs"/> order, outputs in <see cref="Outputs"/> order.</summary>
    IReadOnlyList<Tensor> Run(IReadOnlyList<Tensor> inputs, CancellationToken cancellationToken = default);

    /// <summary>Binds fixed inputs for repeated runs at one shape (compiling for that shape if needed): the bench path.</summary>
    IPreparedRun Prepare(IReadOnlyList<Tensor> inputs);

    /// <summary>Device telemetry now (utilisation, memory), or null where the engine has no device to report.</summary>
    DeviceSample? SampleDevice() => null;
}

/// <summary>One execution context with bound inputs; one thread uses it at a time.</summary>
public interface IPreparedRun : IDisposable
{
    /// <summary>Runs once; returns the execution time in seconds as the engine measures it (CUDA events on a GPU, the wall clock on a CPU).</summary>
    double Run();

    /// <summary>The outputs of the last run.</summary>
    IReadOnlyList<Tensor> ReadOutputs();
}

/// <summary>A point-in-time device reading.</summary>
/// <param name="UtilizationPercent">Busy share of the last sampling period, 0-100.</param>
/// <param name="MemoryUsedBytes">Device memory in use.</param>
/// <param name="MemoryTotalBytes">Device memory in all.</param>
/// <param name="SmClockMhz">The SM clock now, MHz, where the device reports it.</param>
/// <param name="PowerWatts">Power draw now, W, where the device reports it.</param>
/// <param name="ClockLimits">What holds the clocks below their maximum now (<see cref="DeviceClockLimit"/> names), where the device reports it; empty: nothing.</param>
public sealed record DeviceSample(double UtilizationPercent, long MemoryUsedBytes, long MemoryTotalBytes, double? SmClockMhz = null, double? PowerWatts = null, IReadOnlyList<string>? ClockLimits = null);

/// <summary>Why a GPU's clocks are below their maximum (NVML's clock event reasons), by the names bench reports.</summary>
public static class DeviceClockLimit
{
    /// <summary>The names of the reasons set in NVML's bit mask, the idle state left out (a device between runs is not held back).</summary>
    public static IReadOnlyList<string> Names(ulong reasons)
    {
        var names = new List<string>();
        foreach (var (bit, name) in Bits)
        {
            if ((reasons & bit) != 0)
            {
                names.Add(name);
            }
        }

        return names;
    }

    /// <summary>The reasons that slow a device below the clock it would run (not its settings: applications or display clocks, sync boost).</summary>
    public static IReadOnlySet<string> Slowing { get; } = new HashSet<string>(StringComparer.Ordinal) { "power cap", "hardware slowdown", "thermal (software)", "thermal (hardware)", "power brake" };

    private static readonly (ulong Bit, string Name)[] Bits =
    [
        (0x2, "applications clocks"),
        (0x4, "power cap"),
        (0x8, "hardware slowdown"),
        (0x10, "sync boost"),
        (0x20, "thermal (software)"),
        (0x40, "thermal (hardware)"),
        (0x80, "power brake"),
        (0x100, "display clocks"),
    ];
}

/// <summary>What ran: for the context of every result.</summary>
/// <param name="Engine">Engine name (ort, cuda).</param>
/// <param name="Version">Engine library version(s).</param>
/// <param name="Device">Device name (CPU model or GPU name).</param>
/// <param name="Details">Anything else worth recording (execution provider, library versions).</param>
public sealed record EngineDescription(string Engine, string Version, string Device, IReadOnlyDictionary<string, string> Details);

/// <summary>Numeric precision an engine computes in.</summary>
public enum Precision
{
    /// <summary>32-bit float.</summary>
    Fp32,

    /// <summary>16-bit float (tensor cores on a GPU).</summary>
    Fp16,

    /// <summary>
    /// 8-bit integers: a float model quantized when it is loaded (QDQ, calibrated as <see cref="EngineOptions.Calibration"/>
    /// says), then run as a QDQ model; what stays float runs as the engine runs float (fp16 on a GPU).
    /// </summary>
    Int8,
}

/// <summary>Options for loading a model; each engine rejects, with a clear error, what it does not support.</summary>
public sealed record EngineOptions
{
    /// <summary>Arithmetic precision.</summary>
    public Precision Precision { get; init; } = Precision.Fp32;

    /// <summary>With <see cref="Precision.Int8"/>: the calibration data and method the model is quantized with.</summary>
    public Transforms.Int8Calibration Calibration { get; init; } = Transforms.Int8Calibration.Default;

    /// <summary>Threads inside one operator (ONNX Runtime); 0 = engine default.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Threads across operators (ONNX Runtime); 0 = engine default.</summary>
    public int InterOpThreads { get; init; }

    /// <summary>
    /// Whether ONNX Runtime's thread-pool workers spin (busy-wait) for work between operators and runs (its default:
    /// lowest latency for one process alone on the host). A server turns it off: spinning workers of several instances
    /// take the cores the network stack needs, and their CPU time looks like work.
    /// </summary>
    public bool IntraOpSpinning { get; init; } = true;

    /// <summary>
    /// Staged runs one session may have in flight on one stream (GPU engines; a server sets it from pipeline_depth): a run
    /// that starts while another runs goes on a companion of that run's slot, with its own staging memory and completion
    /// event, instead of a slot with a stream of its own. 1: every concurrent run gets a slot of its own.
    /// </summary>
    public int PipelineDepth { get; init; } = 1;

    /// <summary>ONNX Runtime graph optimisation level: disabled, basic, extended, all.</summary>
    public string GraphOptimization { get; init; } = "all";

    /// <summary>ONNX Runtime execution provider: cpu, cuda, tensorrt, openvino.</summary>
    public string ExecutionProvider { get; init; } = "cpu";

    /// <summary>GPU ordinal.</summary>
    public int DeviceId { get; init; }

    /// <summary>Allow TF32 tensor-core math for fp32 (GPU engines).</summary>
    public bool AllowTf32 { get; init; }

    /// <summary>Capture and replay CUDA graphs (GPU engines).</summary>
    public bool UseCudaGraph { get; init; } = true;

    /// <summary>Record per-layer timings (where the engine supports it).</summary>
    public bool Profile { get; init; }

    /// <summary>
    /// Time every run end to end (GPU engines): inputs copied from page-locked host memory to the device, compute,
    /// outputs copied back, as trtexec does by default. Off: a run is the device compute alone.
    /// </summary>
    public bool IncludeTransfers { get; init; }

    /// <summary>
    /// How a GPU engine picks its library kernels (cuDNN convolution algorithms, cuBLASLt matmul algorithms): timed when a
    /// plan is built, the winners kept in an on-disk timing cache per device, shape and precision, or the libraries'
    /// heuristics. <see cref="TacticSelection.EngineDefault"/>: the engine's own default (cuda: timed).
    /// </summary>
    public TacticSelection Tactics { get; init; }

    /// <summary>
    /// Batch sizes that get a plan of their own (GPU engines); a batch between two runs padded to the next one. Empty:
    /// a plan per exact batch size.
    /// </summary>
    public IReadOnlyList<int> BatchProfiles { get; init; } = [];

    /// <summary>
    /// With <see cref="BatchProfiles"/>: a batch that runs padded to a profile also gets a plan of its own, built in the
    /// background and used once it is ready (GPU engines), so padding costs the padded rows only until then. No run waits
    /// for such a build. Off: padded batches stay padded.
    /// </summary>
    public bool ExactPlans { get; init; }

    /// <summary>
    /// The shapes other dynamic dimensions may take (GPU engines): a bounded grid of plans, built ahead by warm-up, and a
    /// clear refusal for a shape outside it. Empty: any shape, each getting its plan when first seen.
    /// </summary>
    public IReadOnlyList<ShapeProfile> ShapeProfiles { get; init; } = [];
}

/// <summary>How a GPU engine picks the library kernels of a plan (--tactics).</summary>
public enum TacticSelection
{
    /// <summary>Not asked: the engine's default (cuda: timed, unless BATCHWISE_CUDNN_ALGO says otherwise).</summary>
    EngineDefault,

    /// <summary>Every candidate timed when a plan is built; the winners kept in a timing cache on disk (TensorRT's way).</summary>
    Timed,

    /// <summary>The libraries' heuristics' first choice: no timing, a faster first build.</summary>
    Heuristic,
}
