namespace Batchwise.Engines;

/// <summary>
/// An optional capability of an <see cref="IEngineSession"/> that builds a plan per input shape (a GPU engine): which
/// plans it built and how long each took, and the batch profiles it runs between (TensorRT's optimization profiles).
/// </summary>
public interface IPlanBuilds
{
    /// <summary>Every plan built so far, oldest first.</summary>
    IReadOnlyList<PlanBuild> Builds { get; }

    /// <summary>Raised after each plan build, on the thread that built it.</summary>
    event Action<PlanBuild>? PlanBuilt;

    /// <summary>
    /// Raised when a plan built in the background (<see cref="EngineOptions.ExactPlans"/>) fails, with the shapes it was
    /// for; the batches it was for go on running padded.
    /// </summary>
    event Action<string, Exception>? BackgroundBuildFailed;

    /// <summary>
    /// Batch sizes with a plan of their own, ascending; a batch between two runs padded to the next one (the padded rows
    /// never reach an output). Empty: every batch size gets its exact plan.
    /// </summary>
    IReadOnlyList<int> BatchProfiles { get; }

    /// <summary>
    /// The input shapes warm-up builds plans for: every batch profile times every point of the shape profiles' grids;
    /// dimensions neither profile covers must be fixed (else a one-line error says which).
    /// </summary>
    IReadOnlyList<IReadOnlyList<long[]>> WarmUpShapes { get; }

    /// <summary>
    /// Builds the plan of every <see cref="WarmUpShapes"/> entry and runs each once (so that what is lazily set up, a CUDA
    /// graph among it, is ready before the first request); <paramref name="inputsFor"/> gives inputs of those shapes.
    /// </summary>
    void WarmUp(Func<IReadOnlyList<long[]>, IReadOnlyList<Tensor>> inputsFor, IProgress<string>? progress = null);

    /// <summary>
    /// Where the session's start went, finer than load / plan / first run (device context, library handles, reading a
    /// saved engine, the first plan's library calls, the first run's host enqueue and GPU time), seconds by name.
    /// </summary>
    StartupSpans Startup { get; }
}

/// <summary>One plan an engine built.</summary>
/// <param name="Shapes">The input shapes it was built for, e.g. "x[8,3,224,224]".</param>
/// <param name="Seconds">Wall time of the build: shapes, algorithm choices, kernels, constants, memory layout.</param>
/// <param name="KernelsCompiled">Kernels compiled for it (new operator signatures); 0 when every kernel was cached.</param>
/// <param name="KernelsLoaded">Kernels it loaded from the on-disk cache or a saved engine.</param>
/// <param name="CompileSeconds">Of <paramref name="Seconds"/>, the time in the kernel compiler.</param>
/// <param name="Steps">Steps of the plan (kernel launches and library calls).</param>
public sealed record PlanBuild(string Shapes, double Seconds, int KernelsCompiled, int KernelsLoaded, double CompileSeconds, int Steps)
{
    /// <summary>Where the build's time went, in seconds by phase (graph, library queries, kernels, constants), where the engine measures it.</summary>
    public IReadOnlyDictionary<string, double> Phases { get; init; } = new Dictionary<string, double>();

    /// <summary>Finer spans within the phases (library handles, descriptors, heuristics, workspace queries, uploads), seconds by name; they overlap the phases, they do not add to them.</summary>
    public IReadOnlyDictionary<string, double> Details { get; init; } = new Dictionary<string, double>();

    /// <summary>Of <see cref="Steps"/>, those on a second stream beside the main one (independent branches).</summary>
    public int SideSteps { get; init; }

    /// <summary>Of <see cref="Steps"/>, the generated kernels launched with programmatic dependent launch (0 where it is off).</summary>
    public int ProgrammaticKernels { get; init; }
}
