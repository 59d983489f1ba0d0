using System.Runtime.InteropServices;
using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda.Planning;

/// <summary>
/// An int8 GEMM through cuBLASLt: either requantizing in its epilogue, D = saturate(round(alpha[row] * (A^T B) + bias[row]))
/// in int8 with alpha and bias float32 vectors on the device (a 1x1 convolution of a QDQ model over NHWC pixels), or,
/// with no vectors (-1), the exact int32 sums D = A^T B (a QDQ MatMul or Gemm, dequantized by the kernel that reads them).
/// Planned without a library (<see cref="IPlanTarget.PlansMatmulsWithoutLibrary"/>) it has no descriptors and cannot be
/// enqueued.
/// </summary>
internal sealed class Int8GemmStep : PlanStep, IDisposable
{
    private readonly IntPtr _algo;
    private readonly Lock _biasLock = new();
    private ulong _bias;

    public unsafe Int8GemmStep(string node, int a, int b, int d, int alpha, int bias, CublasLtMatmulDescriptor? desc, CublasLtMatrixLayout? aLayout, CublasLtMatrixLayout? bLayout, CublasLtMatrixLayout? dLayout, CublasLt.HeuristicResult algo)
        : base(node, [a, b, d, alpha, bias])
    {
        (Desc, ALayout, BLayout, DLayout) = (desc, aLayout, bLayout, dLayout);
        _algo = (IntPtr)NativeMemory.Alloc((nuint)sizeof(CublasLt.HeuristicResult));
        *(CublasLt.HeuristicResult*)_algo = algo;
    }

    /// <summary>
    /// For an int32-sum product (no vectors): D [rows, columns] = B [rows, inner] · A [columns, inner]^T, its sizes (the
    /// CPU test runner computes it from them); null for a requantizing one.
    /// </summary>
    public (long Rows, long Inner, long Columns)? Sums { get; init; }

    public CublasLtMatmulDescriptor? Desc { get; }

    public CublasLtMatrixLayout? ALayout { get; }

    public CublasLtMatrixLayout? BLayout { get; }

    public CublasLtMatrixLayout? DLayout { get; }

    public override unsafe void Enqueue(ExecutionContext context, int index)
    {
        if (Desc is null || ALayout is null || BLayout is null || DLayout is null)
        {
            throw new InvalidOperationException($"{Node}: this int8 product was planned without cuBLASLt and cannot run on a GPU");
        }

        var d = context.Pointer(Buffers[2]);
        if (Buffers[3] < 0)
        {
            int one = 1, zero = 0;
            CublasLt.MatmulScaled(context.CublasLt, Desc, &one, context.Pointer(Buffers[0]), ALayout, context.Pointer(Buffers[1]), BLayout, &zero, d, DLayout, d, DLayout, (CublasLt.HeuristicResult*)_algo, context.Workspace, context.WorkspaceBytes, context.Stream.Handle);
            return;
        }

        // The bias is a constant buffer (one address for every context of the plan): the descriptor learns it once.
        var bias = context.Pointer(Buffers[4]);
        lock (_biasLock)
        {
            if (_bias != bias)
            {
                CublasLt.SetBias(Desc, bias);
                _bias = bias;
            }
        }

        var beta = 0f;
        CublasLt.MatmulScaled(context.CublasLt, Desc, (void*)context.Pointer(Buffers[3]), context.Pointer(Buffers[0]), ALayout, context.Pointer(Buffers[1]), BLayout, &beta, d, DLayout, d, DLayout, (CublasLt.HeuristicResult*)_algo, context.Workspace, context.WorkspaceBytes, context.Stream.Handle);
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
