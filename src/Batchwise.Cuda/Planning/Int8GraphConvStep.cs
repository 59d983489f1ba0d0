using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// An int8 convolution with its requantization fused by cuDNN's graph API (<see cref="Int8ConvGraph"/>): buffers x, w,
/// scale, offset, y, then the zero vector and the residual with its scale vector where the graph has them (the order of
/// <see cref="Int8ConvGraphShape.Uids"/>). A variant pack (the tensors' addresses) is made once per set of addresses: an
/// execution context's buffers do not move.
/// </summary>
internal sealed class Int8GraphConvStep : PlanStep, IDisposable
{
    private readonly Int8ConvGraph _graph;
    private readonly VariantPacks _packs = new();

    public Int8GraphConvStep(string node, int[] buffers, Int8ConvGraph graph)
        : base(node, buffers)
    {
        if (buffers.Length != graph.Shape.Uids.Length)
        {
            throw new BatchwiseException($"The int8 graph convolution {node} has {buffers.Length} buffers for {graph.Shape.Uids.Length} tensors ({graph.Shape.Key})", "Report this: the step's buffers follow the graph's tensors.");
        }

        _graph = graph;
    }

    /// <summary>The graph and its chosen plan.</summary>
    public Int8ConvGraph Graph => _graph;

    public override void Enqueue(ExecutionContext context, int index)
    {
        var count = _graph.Shape.Uids.Length;
        var pointers = new ulong[count];
        for (var i = 0; i < count; i++)
        {
            pointers[i] = context.Pointer(Buffers[i]);
        }

        var workspace = context.Workspace;
        var pack = _packs.For([.. pointers, workspace], () =>
        {
            // Once per set of addresses (the first run, before anything of this step reaches the GPU): what the
            // descriptors declare is checked here, so a mismatch is this message and not a fault that loses the context.
            if (Int8ConvGraph.CheckAddresses(_graph.Shape.Uids, pointers, _graph.WorkspaceBytes, workspace, context.WorkspaceBytes) is { } why)
            {
                throw new BatchwiseException($"The int8 graph convolution {Node} cannot run: {why} ({_graph.Shape.Key}, {_graph.Engine})", $"Report this; set {Int8Layers.GraphSwitch}=off to plan int8 convolutions without cuDNN's graph API meanwhile.");
            }

            return Cudnn.BackendVariantPackOf(_graph.Shape.Uids, pointers, workspace);
        }, out var first);

        var handle = context.CudnnOrNull ?? throw new BatchwiseException($"The int8 graph convolution {Node} runs on a slot without a cuDNN handle", "Report this: a plan with int8 graph steps opens cuDNN on its slots (ExecutionPlan.UsesCudnn).");
        _graph.Execute(handle, pack);
        if (first && Int8Layers.Tracing)
        {
            // Traced, the first execution at these addresses (a step-by-step run: never inside a CUDA graph's capture) is
            // waited for, so a fault names this layer rather than whatever synchronizes next.
            try
            {
                CudaDriver.Synchronize(context.Stream);
                Int8Layers.Trace($"{Node}: ran at its arena addresses ({_graph.Engine})");
            }
            catch (CudaException e)
            {
                Int8Layers.Trace($"{Node}: faulted at its arena addresses ({_graph.Engine}): {e.Message}");
                throw new BatchwiseException($"The int8 graph convolution {Node} failed in its first run ({_graph.Shape.Key}; {_graph.Engine}): {e.Message}", $"Set {Int8Layers.GraphSkipSwitch} to that engine, or {Int8Layers.GraphSwitch}=off; please report the layer.", e);
            }
        }
    }

    public void Dispose()
    {
        _packs.Dispose();
        _graph.Dispose();
    }
}
