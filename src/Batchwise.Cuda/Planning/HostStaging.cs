using Batchwise.Cuda.Interop;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// Where each tensor lies in one page-locked staging block: offsets aligned so every copy starts on its own
/// <see cref="Alignment"/>-byte boundary (the DMA engines' preferred granularity), in the order given.
/// </summary>
/// <param name="Offsets">Byte offset of each tensor in the block.</param>
/// <param name="Bytes">Size of each tensor.</param>
/// <param name="TotalBytes">Size of the block.</param>
internal sealed record StagingLayout(long[] Offsets, long[] Bytes, long TotalBytes)
{
    /// <summary>Start alignment of every tensor in the block.</summary>
    public const long Alignment = 256;

    /// <summary>Lays out tensors of these sizes (zero allowed: it takes no space) one after another.</summary>
    public static StagingLayout Of(IReadOnlyList<long> sizes)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        var offsets = new long[sizes.Count];
        var next = 0L;
        for (var i = 0; i < sizes.Count; i++)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(sizes[i]);
            offsets[i] = next;
            next = checked(next + ((sizes[i] + Alignment - 1) / Alignment * Alignment));
        }

        return new StagingLayout(offsets, sizes.ToArray(), next);
    }
}

/// <summary>
/// The page-locked host side of one execution context, for end-to-end runs (bench --transfers): an input block that
/// holds the bound inputs, an output block the outputs are copied back into, and the four events that split a run into
/// H2D, compute and D2H. Everything is enqueued on the context's own stream, so the copies of one context overlap the
/// compute of another (several contexts: --concurrency) with no device-wide synchronisation.
/// </summary>
internal sealed unsafe class HostStaging : IDisposable
{
    private readonly PinnedHostMemory _inputBlock;
    private readonly PinnedHostMemory _outputBlock;
    private readonly long[] _inputCopyBytes;

    public HostStaging(ExecutionPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        InputBuffers = plan.InputBuffers;
        Inputs = StagingLayout.Of(plan.InputBuffers.Select(b => b < 0 ? 0 : plan.Buffers[b].Bytes).ToList());
        OutputIndices = Enumerable.Range(0, plan.Outputs.Count).Where(i => plan.Outputs[i].Constant is null && plan.Outputs[i].Buffer >= 0).ToArray();
        Outputs = StagingLayout.Of(plan.Outputs.Select(o => o.Constant is null && o.Buffer >= 0 ? Tensor.ElementCountOf(o.Shape) * o.Type.SizeOf() : 0).ToList());
        _inputCopyBytes = new long[InputBuffers.Length];
        _inputBlock = CudaDriver.AllocatePinned(Inputs.TotalBytes);
        try
        {
            _outputBlock = CudaDriver.AllocatePinned(Outputs.TotalBytes);
            Start = CudaDriver.CreateEvent();
            Uploaded = CudaDriver.CreateEvent();
            Computed = CudaDriver.CreateEvent();
            Downloaded = CudaDriver.CreateEvent();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Where each graph input lies in the input block (by input index).</summary>
    public StagingLayout Inputs { get; }

    /// <summary>Where each graph output lies in the output block (by output index; folded outputs take no space).</summary>
    public StagingLayout Outputs { get; }

    /// <summary>The arena buffer of each graph input (-1: folded into the plan or unused, never copied).</summary>
    public int[] InputBuffers { get; }

    /// <summary>The outputs that are copied back (those on the device).</summary>
    public int[] OutputIndices { get; }

    public CudaEvent Start { get; } = null!;

    public CudaEvent Uploaded { get; } = null!;

    public CudaEvent Computed { get; } = null!;

    public CudaEvent Downloaded { get; } = null!;

    /// <summary>
    /// Copies the bound inputs into the page-locked block (once per prepared run, as trtexec fills its host buffers
    /// once): what every run then uploads.
    /// </summary>
    public void Stage(IReadOnlyList<Tensor> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count != InputBuffers.Length)
        {
            throw new ArgumentException($"{inputs.Count} inputs for a plan of {InputBuffers.Length}", nameof(inputs));
        }

        for (var i = 0; i < inputs.Count; i++)
        {
            var bytes = InputBuffers[i] < 0 ? 0 : inputs[i].Data.LongLength;
            if (bytes > Inputs.Bytes[i])
            {
                throw new ArgumentException($"Input {i} has {bytes} bytes; its device buffer holds {Inputs.Bytes[i]}", nameof(inputs));
            }

            inputs[i].Data.AsSpan(0, (int)bytes).CopyTo(new Span<byte>((byte*)_inputBlock.DangerousGetHandle() + Inputs.Offsets[i], (int)bytes));
            _inputCopyBytes[i] = bytes;
        }
    }

    /// <summary>Enqueues the H2D copy of every staged input into the context's arena.</summary>
    public void EnqueueUpload(ExecutionContext context)
    {
        var block = (byte*)_inputBlock.DangerousGetHandle();
        for (var i = 0; i < InputBuffers.Length; i++)
        {
            if (_inputCopyBytes[i] > 0)
            {
                CudaDriver.CopyToDevice(context.Pointer(InputBuffers[i]), block + Inputs.Offsets[i], _inputCopyBytes[i], context.Stream);
            }
        }
    }

    /// <summary>Enqueues the D2H copy of every device output into the output block.</summary>
    public void EnqueueDownload(ExecutionContext context)
    {
        var block = (byte*)_outputBlock.DangerousGetHandle();
        var outputs = context.Plan.Outputs;
        foreach (var i in OutputIndices)
        {
            if (Outputs.Bytes[i] > 0)
            {
                CudaDriver.CopyToHost(block + Outputs.Offsets[i], context.Pointer(outputs[i].Buffer), Outputs.Bytes[i], context.Stream);
            }
        }
    }

    /// <summary>Output <paramref name="index"/> as the last download left it (call only once that download has finished).</summary>
    public ReadOnlySpan<byte> Output(int index) =>
        new((byte*)_outputBlock.DangerousGetHandle() + Outputs.Offsets[index], checked((int)Outputs.Bytes[index]));

    public void Dispose()
    {
        Start?.Dispose();
        Uploaded?.Dispose();
        Computed?.Dispose();
        Downloaded?.Dispose();
        _outputBlock?.Dispose();
        _inputBlock.Dispose();
    }
}
