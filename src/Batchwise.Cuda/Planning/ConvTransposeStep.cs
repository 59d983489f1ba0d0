using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// A transposed convolution through cuDNN's backward-data call: the plan's input x is the "dy" of a forward
/// convolution whose "dx" is the output y (both in the filter's [C_in, C_out / groups, k...] layout).
/// </summary>
internal sealed class ConvTransposeStep : PlanStep, IDisposable
{
    public ConvTransposeStep(string node, int x, int w, int y, CudnnTensorDescriptor xDesc, CudnnFilterDescriptor wDesc, CudnnConvolutionDescriptor convDesc, CudnnTensorDescriptor yDesc, int algo, long workspaceBytes)
        : base(node, [x, w, y])
    {
        (XDesc, WDesc, ConvDesc, YDesc, Algo, WorkspaceBytes) = (xDesc, wDesc, convDesc, yDesc, algo, workspaceBytes);
    }

    public CudnnTensorDescriptor XDesc { get; }

    public CudnnFilterDescriptor WDesc { get; }

    public CudnnConvolutionDescriptor ConvDesc { get; }

    public CudnnTensorDescriptor YDesc { get; }

    public int Algo { get; }

    public long WorkspaceBytes { get; }

    public override void Enqueue(ExecutionContext context, int index) =>
        Cudnn.ConvolutionBackwardData(context.Cudnn, WDesc, context.Pointer(Buffers[1]), XDesc, context.Pointer(Buffers[0]), ConvDesc, Algo, context.Workspace, WorkspaceBytes, YDesc, context.Pointer(Buffers[2]));

    public void Dispose()
    {
        XDesc.Dispose();
        WDesc.Dispose();
        ConvDesc.Dispose();
        YDesc.Dispose();
    }
}
