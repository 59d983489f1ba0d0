using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// The shape of an attention block run by cuDNN's fused attention (<see cref="CudnnAttention"/>): [batch, heads, rows,
/// keys] scores, a head of <see cref="HeadDim"/>; the (batch, head, row, column) strides of Q, K (as [.., key, d]), V
/// and O in elements, each operand's offset into its buffer in elements; whether a half bias is added, [batch, 1, 1, keys]
/// or (<see cref="BiasPerRow"/>) [batch, 1, rows, keys]; or (<see cref="SequenceLengths"/>) the mask as int32 sequence
/// lengths (<see cref="Kernels.KernelSource.AttentionSequenceLengths"/>'s: queries, then keys, a batch item each).
/// </summary>
internal sealed record CudnnAttentionShape(int Batch, int Heads, int Rows, int Keys, int HeadDim, long[] Q, long[] K, long[] V, long[] O, long[] Offsets, float Scale, bool Bias, bool BiasPerRow = false, bool SequenceLengths = false)
{
    /// <summary>Whether the step reads a mask buffer (its fifth): the bias or the sequence lengths.</summary>
    public bool Masked => Bias || SequenceLengths;
}

/// <summary>
/// An attention block run by cuDNN's fused scaled-dot-product attention (<see cref="AttentionChoice"/>): buffers O, Q, K, V
/// and the half bias or the sequence lengths (or -1). Planned without the library (<see cref="IPlanTarget.PlansMatmulsWithoutLibrary"/>) it has
/// no cuDNN plan: the CPU test runner computes it from <see cref="Shape"/>. A variant pack (the tensors' addresses) is
/// made once per set of addresses: an execution context's buffers do not move. Blocks of one shape share one cuDNN plan.
/// </summary>
internal sealed class CudnnAttentionStep : PlanStep, IDisposable
{
    private readonly CudnnAttention? _attention;
    private readonly VariantPacks _packs = new();

    /// <summary>A step over <paramref name="attention"/>'s plan (shared by the plan's blocks of one shape; disposing it twice is safe).</summary>
    public CudnnAttentionStep(string node, int[] buffers, CudnnAttentionShape shape, CudnnAttention? attention)
        : base(node, buffers)
    {
        Shape = shape;
        _attention = attention;
    }

    public CudnnAttentionShape Shape { get; }

    public override void Enqueue(ExecutionContext context, int index)
    {
        if (_attention is null)
        {
            throw new InvalidOperationException($"{Node} was planned without cuDNN (a plan test's target) and cannot run on a GPU");
        }

        var handle = context.CudnnOrNull ?? throw new BatchwiseException($"The cuDNN attention {Node} runs on a slot without a cuDNN handle", "Report this: a plan with cuDNN attention steps opens cuDNN on its slots (ExecutionPlan.UsesCudnn).");
        if (context.WorkspaceBytes < _attention.WorkspaceBytes)
        {
            throw new BatchwiseException($"The cuDNN attention {Node} needs {_attention.WorkspaceBytes} bytes of workspace, its slot has {context.WorkspaceBytes}", "Report this; set BATCHWISE_ATTENTION=own meanwhile (the engine's own attention kernel).");
        }

        ulong At(int buffer, long offset) => context.Pointer(Buffers[buffer]) + (ulong)(offset * 2);
        ulong[] pointers = [At(1, Shape.Offsets[0]), At(2, Shape.Offsets[1]), At(3, Shape.Offsets[2]), context.Pointer(Buffers[0]), Shape.Masked ? context.Pointer(Buffers[4]) : 0, context.Workspace];
        var attention = _attention;
        _attention.Execute(handle, _packs.For(pointers, () => attention.Pack(pointers[0], pointers[1], pointers[2], pointers[3], pointers[4], pointers[5]), out _));
    }

    public void Dispose()
    {
        _packs.Dispose();
        _attention?.Dispose();
    }
}
