namespace Batchwise.Engines;

/// <summary>
/// An optional capability of an <see cref="IEngineSession"/>: runs whose inputs are written straight into memory the
/// engine owns (page-locked on a GPU engine, so the copy to the device starts from it without another one) and whose
/// outputs are read from it, asynchronously. A server writes each request's rows into a staged run once and answers
/// each request from the staged outputs: one copy each way, no allocation per request.
/// </summary>
public interface IStagedExecution
{
    /// <summary>Rents an execution for inputs of these shapes (in input order); dispose it to give it back.</summary>
    IStagedRun Stage(IReadOnlyList<long[]> inputShapes);
}

/// <summary>One staged execution: fill the inputs, run, read the outputs, dispose.</summary>
public interface IStagedRun : IDisposable
{
    /// <summary>
    /// The output shapes (the caller's rows when the engine pads a batch to a profile); null before <see cref="RunAsync"/>
    /// where they are known only once run (a data-dependent model), so no output can go to a target in place.
    /// </summary>
    IReadOnlyList<long[]>? OutputShapes { get; }

    /// <summary>Input <paramref name="index"/>'s bytes, to be written before <see cref="RunAsync"/> (exactly its shape's size).</summary>
    Memory<byte> Input(int index);

    /// <summary>
    /// Copies <paramref name="source"/> (one request's rows, in memory another process shares) straight into input
    /// <paramref name="index"/> at <paramref name="byteOffset"/> when the run executes, instead of the caller writing those
    /// bytes into <see cref="Input"/>; false when the engine cannot read that memory (the caller copies them itself).
    /// The source stays valid until <see cref="RunAsync"/> completes.
    /// </summary>
    bool TryCopyInput(int index, long byteOffset, TensorSource source) => false;

    /// <summary>
    /// Writes one request's rows of output <paramref name="index"/> (<paramref name="byteCount"/> bytes at
    /// <paramref name="byteOffset"/> of the output) straight to <paramref name="target"/> when the run executes (device
    /// memory on the engine's GPU: device to device; page-locked host memory: device to host with no staging copy),
    /// instead of into <see cref="Output"/>; false when the engine cannot write there (the caller copies the rows from
    /// <see cref="Output"/> itself). The target stays valid until <see cref="RunAsync"/> completes.
    /// </summary>
    bool TryCopyOutput(int index, long byteOffset, long byteCount, TensorTarget target) => false;

    /// <summary>Reads input <paramref name="index"/> from device memory instead (CUDA shared memory); null where the engine has no device.</summary>
    void SetDeviceInput(int index, ulong devicePointer) =>
        throw new BatchwiseException("This engine has no device memory to read inputs from", "Use --engine cuda for CUDA shared memory.");

    /// <summary>Writes output <paramref name="index"/> to device memory instead (CUDA shared memory).</summary>
    void SetDeviceOutput(int index, ulong devicePointer) =>
        throw new BatchwiseException("This engine has no device memory to write outputs to", "Use --engine cuda for CUDA shared memory.");

    /// <summary>Runs; completes when every output is readable (or written to its device pointer).</summary>
    Task RunAsync(CancellationToken cancellationToken = default);

    /// <summary>Output <paramref name="index"/>'s bytes after <see cref="RunAsync"/>.</summary>
    ReadOnlyMemory<byte> Output(int index);
}

/// <summary>A staged run for any engine: managed buffers, run through <see cref="IEngineSession.Run"/>.</summary>
public sealed class ManagedStagedRun : IStagedRun
{
    private readonly IEngineSession _session;
    private readonly Tensor[] _inputs;
    private IReadOnlyList<Tensor>? _outputs;

    /// <summary>Stages inputs of <paramref name="inputShapes"/> for <paramref name="session"/>.</summary>
    public ManagedStagedRun(IEngineSession session, IReadOnlyList<long[]> inputShapes)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(inputShapes);
        _session = session;
        _inputs = [.. session.Inputs.Select((spec, i) => Tensor.Zeros(spec.ElementType, inputShapes[i]))];
    }

    /// <inheritdoc/>
    public IReadOnlyList<long[]>? OutputShapes => _outputs?.Select(o => o.Shape).ToList();

    /// <inheritdoc/>
    public Memory<byte> Input(int index) => _inputs[index].Data;

    /// <inheritdoc/>
    public async Task RunAsync(CancellationToken cancellationToken = default) =>
        _outputs = await Task.Run(() => _session.Run(_inputs, cancellationToken), cancellationToken).ConfigureAwait(false);

    /// <inheritdoc/>
    public ReadOnlyMemory<byte> Output(int index) => (_outputs ?? throw new InvalidOperationException("Run first"))[index].Data;

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}
