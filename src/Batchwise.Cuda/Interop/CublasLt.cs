using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>cuBLASLt: (batched, strided) matrix multiplication with fp32 compute, TF32 only when asked.</summary>
internal static unsafe partial class CublasLt
{
    private const string Lib = "batchwise_cublaslt";

    public const int CUDA_R_32F = 0;
    public const int CUDA_R_16F = 2;
    public const int CUDA_R_8I = 3;
    public const int CUDA_R_32I = 10;
    public const int CUBLAS_COMPUTE_32I = 72;
    public const int CUBLASLT_POINTER_MODE_HOST = 0;
    public const int CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO = 3;
    public const int CUBLASLT_EPILOGUE_DEFAULT = 1;
    public const int CUBLASLT_EPILOGUE_RELU = 2;
    public const int CUBLASLT_EPILOGUE_BIAS = 4;
    public const int CUBLASLT_EPILOGUE_RELU_BIAS = 6;
    public const int CUBLASLT_EPILOGUE_GELU = 32;
    public const int CUBLASLT_EPILOGUE_GELU_BIAS = 36;
    public const int CUBLAS_COMPUTE_32F = 68;
    public const int CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    public const int CUBLAS_OP_N = 0;
    public const int CUBLAS_OP_T = 1;
    private const int DescComputeType = 0;
    private const int DescPointerMode = 2;
    private const int DescTransA = 3;
    private const int DescTransB = 4;
    private const int DescEpilogue = 7;
    private const int DescBiasPointer = 8;
    private const int DescBiasDataType = 26;
    private const int LayoutBatchCount = 5;
    private const int LayoutStridedBatchOffset = 6;
    private const int PreferenceMaxWorkspaceBytes = 1;

    /// <summary>cublasLtMatmulHeuristicResult_t: the algorithm (opaque 64 bytes), its workspace, state and waves.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct HeuristicResult
    {
        public fixed ulong Algo[8];
        public nuint WorkspaceSize;
        public int State;
        public float WavesCount;
        public fixed int Reserved[4];
    }

    [LibraryImport(Lib)] private static partial nuint cublasLtGetVersion();
    [LibraryImport(Lib)] private static partial IntPtr cublasLtGetStatusName(int status);
    [LibraryImport(Lib)] private static partial IntPtr cublasLtGetStatusString(int status);
    [LibraryImport(Lib)] private static partial int cublasLtCreate(out IntPtr handle);
    [LibraryImport(Lib)] internal static partial int cublasLtDestroy(IntPtr handle);
    [LibraryImport(Lib)] private static partial int cublasLtMatmulDescCreate(out IntPtr desc, int computeType, int scaleType);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescDestroy(IntPtr desc);
    [LibraryImport(Lib)] private static partial int cublasLtMatmulDescSetAttribute(IntPtr desc, int attribute, void* value, nuint size);
    [LibraryImport(Lib)] private static partial int cublasLtMatrixLayoutCreate(out IntPtr layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutDestroy(IntPtr layout);
    [LibraryImport(Lib)] private static partial int cublasLtMatrixLayoutSetAttribute(IntPtr layout, int attribute, void* value, nuint size);
    [LibraryImport(Lib)] private static partial int cublasLtMatmulPreferenceCreate(out IntPtr pref);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceDestroy(IntPtr pref);
    [LibraryImport(Lib)] private static partial int cublasLtMatmulPreferenceSetAttribute(IntPtr pref, int attribute, void* value, nuint size);
    [LibraryImport(Lib)] private static partial int cublasLtMatmulAlgoGetHeuristic(IntPtr handle, IntPtr desc, IntPtr a, IntPtr b, IntPtr c, IntPtr d, IntPtr pref, int requested, HeuristicResult* results, out int returned);
    [LibraryImport(Lib)] private static partial int cublasLtMatmul(IntPtr handle, IntPtr desc, void* alpha, ulong a, IntPtr aDesc, ulong b, IntPtr bDesc, void* beta, ulong c, IntPtr cDesc, ulong d, IntPtr dDesc, void* algo, ulong workspace, nuint workspaceBytes, IntPtr stream);

    public static void Check(int status, string call)
    {
        if (status != 0)
        {
            string text;
            try
            {
                text = $"{Marshal.PtrToStringUTF8(cublasLtGetStatusName(status))}: {Marshal.PtrToStringUTF8(cublasLtGetStatusString(status))}";
            }
            catch (EntryPointNotFoundException)
            {
                text = "CUBLAS_STATUS_" + status;
            }

            throw new CudaException("cuBLASLt", call, status, text);
        }
    }

    public static string Version()
    {
        NativeLibraries.Load(NativeLibraries.CublasLt);
        var v = (long)cublasLtGetVersion();
        return $"{v / 10000}.{v % 10000 / 100}.{v % 100}";
    }

    public static CublasLtHandle Create()
    {
        NativeLibraries.Load(NativeLibraries.CublasLt);
        Check(cublasLtCreate(out var h), "cublasLtCreate");
        return new CublasLtHandle(h);
    }

    /// <summary>
    /// A matmul descriptor: compute (accumulator) type, transposes, and the type of alpha and beta (fp32 by default;
    /// <see cref="CUDA_R_32I"/> with int32 output).
    /// </summary>
    public static CublasLtMatmulDescriptor MatmulDesc(int computeType, bool transA, bool transB, int scaleType = CUDA_R_32F)
    {
        Check(cublasLtMatmulDescCreate(out var d, computeType, scaleType), "cublasLtMatmulDescCreate");
        var desc = new CublasLtMatmulDescriptor(d);
        var ta = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
        var tb = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
        Check(cublasLtMatmulDescSetAttribute(d, DescTransA, &ta, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
        Check(cublasLtMatmulDescSetAttribute(d, DescTransB, &tb, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
        return desc;
    }

    /// <summary>
    /// Alpha as a device vector of fp32, one per row of D, and beta zero (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO):
    /// per-output-channel requantization scales applied in the epilogue.
    /// </summary>
    public static void SetAlphaPerRow(CublasLtMatmulDescriptor desc)
    {
        var mode = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
        Check(cublasLtMatmulDescSetAttribute(desc.Handle, DescPointerMode, &mode, sizeof(int)), "cublasLtMatmulDescSetAttribute(POINTER_MODE)");
    }

    /// <summary>The epilogue (<see cref="CUBLASLT_EPILOGUE_RELU_BIAS"/> etc.) and its bias vector, one per row of D, of <paramref name="biasType"/>.</summary>
    public static void SetEpilogue(CublasLtMatmulDescriptor desc, int epilogue, ulong bias, int biasType)
    {
        var e = (uint)epilogue;
        Check(cublasLtMatmulDescSetAttribute(desc.Handle, DescEpilogue, &e, sizeof(uint)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
        if (bias != 0)
        {
            Check(cublasLtMatmulDescSetAttribute(desc.Handle, DescBiasPointer, &bias, sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
            Check(cublasLtMatmulDescSetAttribute(desc.Handle, DescBiasDataType, &biasType, sizeof(int)), "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");
        }
    }

    /// <summary>The bias vector's element type (<see cref="CUDA_R_16F"/>, <see cref="CUDA_R_32F"/>): set with an epilogue whose address comes later.</summary>
    public static void SetBiasType(CublasLtMatmulDescriptor desc, int biasType) =>
        Check(cublasLtMatmulDescSetAttribute(desc.Handle, DescBiasDataType, &biasType, sizeof(int)), "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");

    /// <summary>The bias vector's device address (an epilogue with a bias set by <see cref="SetEpilogue"/>).</summary>
    public static void SetBias(CublasLtMatmulDescriptor desc, ulong bias) =>
        Check(cublasLtMatmulDescSetAttribute(desc.Handle, DescBiasPointer, &bias, sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");

    /// <summary>A column-major matrix layout, optionally batched with a stride between matrices (0 broadcasts one matrix).</summary>
    public static CublasLtMatrixLayout Layout(int type, long rows, long cols, long ld, int batch = 1, long batchStride = 0)
    {
        Check(cublasLtMatrixLayoutCreate(out var l, type, (ulong)rows, (ulong)cols, ld), "cublasLtMatrixLayoutCreate");
        var layout = new CublasLtMatrixLayout(l);
        if (batch > 1)
        {
            Check(cublasLtMatrixLayoutSetAttribute(l, LayoutBatchCount, &batch, sizeof(int)), "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
            Check(cublasLtMatrixLayoutSetAttribute(l, LayoutStridedBatchOffset, &batchStride, sizeof(long)), "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
        }

        return layout;
    }

    /// <summary>Up to <paramref name="count"/> algorithms the heuristics offer within a workspace limit, best guess first.</summary>
    public static HeuristicResult[] Algorithms(CublasLtHandle handle, CublasLtMatmulDescriptor desc, CublasLtMatrixLayout a, CublasLtMatrixLayout b, CublasLtMatrixLayout c, CublasLtMatrixLayout d, long maxWorkspace, int count)
    {
        Check(cublasLtMatmulPreferenceCreate(out var p), "cublasLtMatmulPreferenceCreate");
        using var pref = new CublasLtMatmulPreference(p);
        var ws = (ulong)maxWorkspace;
        Check(cublasLtMatmulPreferenceSetAttribute(p, PreferenceMaxWorkspaceBytes, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
        var results = new HeuristicResult[count];
        int returned;
        fixed (HeuristicResult* r = results)
        {
            Check(cublasLtMatmulAlgoGetHeuristic(handle.Handle, desc.Handle, a.Handle, b.Handle, c.Handle, d.Handle, p, count, r, out returned), "cublasLtMatmulAlgoGetHeuristic");
        }

        return results[..returned];
    }

    /// <summary>What the heuristics' empty answer is reported as: cuBLASLt's NOT_SUPPORTED for the problem.</summary>
    public static CudaException NoAlgorithm() => new("cuBLASLt", "cublasLtMatmulAlgoGetHeuristic", 15, "CUBLAS_STATUS_NOT_SUPPORTED: no algorithm for this problem");

    /// <summary>The best algorithm the heuristics offer within a workspace limit.</summary>
    public static HeuristicResult BestAlgorithm(CublasLtHandle handle, CublasLtMatmulDescriptor desc, CublasLtMatrixLayout a, CublasLtMatrixLayout b, CublasLtMatrixLayout c, CublasLtMatrixLayout d, long maxWorkspace)
    {
        Check(cublasLtMatmulPreferenceCreate(out var p), "cublasLtMatmulPreferenceCreate");
        using var pref = new CublasLtMatmulPreference(p);
        var ws = (ulong)maxWorkspace;
        Check(cublasLtMatmulPreferenceSetAttribute(p, PreferenceMaxWorkspaceBytes, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
        HeuristicResult result;
        Check(cublasLtMatmulAlgoGetHeuristic(handle.Handle, desc.Handle, a.Handle, b.Handle, c.Handle, d.Handle, p, 1, &result, out var returned), "cublasLtMatmulAlgoGetHeuristic");
        if (returned == 0)
        {
            throw NoAlgorithm();
        }

        return result;
    }

    /// <summary>
    /// D = alpha * op(A) op(B) + beta * C with alpha and beta passed as the descriptor's pointer mode and scale type
    /// say: host scalars of the scale type, or (per-row alpha) a device pointer to the alpha vector and no beta.
    /// </summary>
    public static void MatmulScaled(CublasLtHandle handle, CublasLtMatmulDescriptor desc, void* alpha, ulong a, CublasLtMatrixLayout aDesc, ulong b, CublasLtMatrixLayout bDesc, void* beta, ulong c, CublasLtMatrixLayout cDesc, ulong d, CublasLtMatrixLayout dDesc, HeuristicResult* algo, ulong workspace, long workspaceBytes, IntPtr stream) =>
        Check(cublasLtMatmul(handle.Handle, desc.Handle, alpha, a, aDesc.Handle, b, bDesc.Handle, beta, c, cDesc.Handle, d, dDesc.Handle, algo->Algo, workspace, (nuint)workspaceBytes, stream), "cublasLtMatmul");

    public static void Matmul(CublasLtHandle handle, CublasLtMatmulDescriptor desc, float alpha, ulong a, CublasLtMatrixLayout aDesc, ulong b, CublasLtMatrixLayout bDesc, float beta, ulong c, CublasLtMatrixLayout cDesc, ulong d, CublasLtMatrixLayout dDesc, HeuristicResult* algo, ulong workspace, long workspaceBytes, IntPtr stream) =>
        Check(cublasLtMatmul(handle.Handle, desc.Handle, &alpha, a, aDesc.Handle, b, bDesc.Handle, &beta, c, cDesc.Handle, d, dDesc.Handle, algo->Algo, workspace, (nuint)workspaceBytes, stream), "cublasLtMatmul");
}

/// <summary>A cuBLASLt library handle (cublasLtHandle_t).</summary>
internal sealed class CublasLtHandle : NativeHandle
{
    public CublasLtHandle(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => CublasLt.cublasLtDestroy(handle) == 0;
}

/// <summary>A cuBLASLt matrix multiplication descriptor (cublasLtMatmulDesc_t): compute type and transposes.</summary>
internal sealed class CublasLtMatmulDescriptor : NativeHandle
{
    public CublasLtMatmulDescriptor(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => CublasLt.cublasLtMatmulDescDestroy(handle) == 0;
}

/// <summary>A cuBLASLt matrix layout (cublasLtMatrixLayout_t): type, rows, columns, leading dimension, batch.</summary>
internal sealed class CublasLtMatrixLayout : NativeHandle
{
    public CublasLtMatrixLayout(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => CublasLt.cublasLtMatrixLayoutDestroy(handle) == 0;
}

/// <summary>A cuBLASLt algorithm search preference (cublasLtMatmulPreference_t).</summary>
internal sealed class CublasLtMatmulPreference : NativeHandle
{
    public CublasLtMatmulPreference(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => CublasLt.cublasLtMatmulPreferenceDestroy(handle) == 0;
}
