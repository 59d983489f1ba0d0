using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>cuDNN 9 (legacy API): convolution forward with tensor, filter and convolution descriptors.</summary>
internal static unsafe partial class Cudnn
{
    private const string Lib = "batchwise_cudnn";

    public const int CUDNN_DATA_FLOAT = 0;
    public const int CUDNN_DATA_HALF = 2;
    public const int CUDNN_DATA_INT8 = 3;
    public const int CUDNN_DATA_INT32 = 4;
    public const int CUDNN_DATA_INT8x32 = 8;
    public const int CUDNN_TENSOR_NCHW = 0;
    public const int CUDNN_TENSOR_NHWC = 1;
    public const int CUDNN_TENSOR_NCHW_VECT_C = 2;
    public const int CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM = 1;
    public const int CUDNN_CROSS_CORRELATION = 1;
    public const int CUDNN_DEFAULT_MATH = 0;
    public const int CUDNN_TENSOR_OP_MATH = 1;
    public const int CUDNN_FMA_MATH = 3;
    public const int CUDNN_ACTIVATION_RELU = 1;
    public const int CUDNN_NOT_PROPAGATE_NAN = 0;

    // The backend (graph) API: descriptor types, attribute types and names (cudnn_graph.h).
    public const int CUDNN_POINTWISE_ADD = 0;
    public const int CUDNN_POINTWISE_MUL = 1;

    /// <summary>cudnnPointwiseMode_t DIV: y = x / b.</summary>
    public const int CUDNN_POINTWISE_DIV = 6;

    /// <summary>cudnnPointwiseMode_t SUB: y = x - b.</summary>
    public const int CUDNN_POINTWISE_SUB = 9;

    /// <summary>cudnnPointwiseMode_t EXP: y = exp(x).</summary>
    public const int CUDNN_POINTWISE_EXP = 13;

    /// <summary>cudnnPointwiseMode_t LOG: y = log(x).</summary>
    public const int CUDNN_POINTWISE_LOG = 15;

    /// <summary>cudnnReduceTensorOp_t ADD: the sum over the reduced dimensions.</summary>
    public const int CUDNN_REDUCE_TENSOR_ADD = 0;

    /// <summary>cudnnReduceTensorOp_t MAX: the maximum over the reduced dimensions.</summary>
    public const int CUDNN_REDUCE_TENSOR_MAX = 3;

    /// <summary>cudnnPointwiseMode_t CMP_LT: y = x &lt; b (a boolean).</summary>
    public const int CUDNN_POINTWISE_CMP_LT = 304;

    /// <summary>cudnnPointwiseMode_t LOGICAL_AND: y = x &amp;&amp; b.</summary>
    public const int CUDNN_POINTWISE_LOGICAL_AND = 400;

    /// <summary>cudnnPointwiseMode_t GEN_INDEX: y = the element's index along the descriptor's axis.</summary>
    public const int CUDNN_POINTWISE_GEN_INDEX = 501;

    /// <summary>cudnnPointwiseMode_t BINARY_SELECT: y = t ? x : b.</summary>
    public const int CUDNN_POINTWISE_BINARY_SELECT = 601;

    /// <summary>cudnnDataType_t BOOLEAN.</summary>
    public const int CUDNN_DATA_BOOLEAN = 11;

    public const int CUDNN_POINTWISE_RELU_FWD = 100;
    public const int CUDNN_POINTWISE_GELU_FWD = 104;
    public const int CUDNN_POINTWISE_SWISH_FWD = 106;
    public const int CUDNN_POINTWISE_GELU_APPROX_TANH_FWD = 107;
    private const int BackendPointwise = 0;
    private const int BackendConvolution = 1;
    private const int BackendEngine = 2;
    private const int BackendEngineConfig = 3;
    private const int BackendEngineHeuristics = 4;
    private const int BackendExecutionPlan = 5;
    private const int BackendKnobChoice = 7;
    private const int BackendConvolutionForward = 10;
    private const int BackendPointwiseOperation = 13;
    private const int BackendOperationGraph = 15;
    private const int BackendVariantPack = 16;
    private const int BackendTensor = 17;
    private const int BackendMatmul = 18;
    private const int BackendMatmulOperation = 19;
    private const int BackendReduction = 21;
    private const int BackendReductionOperation = 22;
    private const int TypeHandle = 0;
    private const int TypeDataType = 1;
    private const int TypeBoolean = 2;
    private const int TypeInt64 = 3;
    private const int TypeFloat = 4;
    private const int TypeDouble = 5;
    private const int TypeVoidPointer = 6;
    private const int TypeConvolutionMode = 7;
    private const int TypeHeuristicsMode = 8;
    private const int TypeKnobType = 9;
    private const int TypePointwiseMode = 14;
    private const int TypeDescriptor = 15;
    private const int TypeReductionOperator = 18;
    private const int TypeBehaviorNote = 19;
    private const int BehaviorNoteRuntimeCompilation = 0;
    private const int BehaviorNoteFilterReorder = 1;
    private const int BehaviorNoteBiasReorder = 2;
    private const int AttrPointwiseMode = 0;
    private const int AttrPointwiseMathPrecision = 1;
    private const int AttrPointwiseAxis = 9;
    private const int AttrConvolutionComputeType = 100;
    private const int AttrConvolutionMode = 101;
    private const int AttrConvolutionDilations = 102;
    private const int AttrConvolutionStrides = 103;
    private const int AttrConvolutionPostPaddings = 104;
    private const int AttrConvolutionPrePaddings = 105;
    private const int AttrConvolutionSpatialDims = 106;
    private const int AttrHeuristicsMode = 200;
    private const int AttrHeuristicsGraph = 201;
    private const int AttrHeuristicsResults = 202;
    private const int AttrEngineConfigEngine = 300;
    private const int AttrEngineConfigKnobChoices = 302;
    private const int AttrPlanHandle = 400;
    private const int AttrPlanEngineConfig = 401;
    private const int AttrPlanWorkspaceSize = 402;
    private const int AttrKnobChoiceType = 600;
    private const int AttrKnobChoiceValue = 601;
    private const int AttrConvolutionForwardAlpha = 700;
    private const int AttrConvolutionForwardBeta = 701;
    private const int AttrConvolutionForwardDescriptor = 702;
    private const int AttrConvolutionForwardW = 703;
    private const int AttrConvolutionForwardX = 704;
    private const int AttrConvolutionForwardY = 705;
    private const int AttrPointwiseDescriptor = 750;
    private const int AttrPointwiseX = 751;
    private const int AttrPointwiseB = 752;
    private const int AttrPointwiseY = 753;
    private const int AttrPointwiseT = 758;
    private const int AttrGraphHandle = 800;
    private const int AttrGraphOperations = 801;
    private const int AttrTensorAlignment = 900;
    private const int AttrTensorDataType = 901;
    private const int AttrTensorDimensions = 902;
    private const int AttrTensorStrides = 903;
    private const int AttrTensorUniqueId = 906;
    private const int AttrTensorIsVirtual = 907;
    private const int AttrTensorIsByValue = 908;
    private const int AttrVariantUniqueIds = 1000;
    private const int AttrVariantPointers = 1001;
    private const int AttrVariantWorkspace = 1003;
    private const int AttrEngineGlobalIndex = 1301;
    private const int AttrEngineBehaviorNote = 1305;
    private const int AttrMatmulComputeType = 1500;
    private const int AttrMatmulPaddingValue = 1503;
    private const int AttrMatmulA = 1520;
    private const int AttrMatmulB = 1521;
    private const int AttrMatmulC = 1522;
    private const int AttrMatmulDescriptor = 1523;
    private const int AttrMatmulMOverride = 1525;
    private const int AttrMatmulNOverride = 1526;
    private const int AttrMatmulKOverride = 1527;
    private const int AttrReductionOperator = 1600;
    private const int AttrReductionComputeType = 1601;
    private const int AttrReductionX = 1610;
    private const int AttrReductionY = 1611;
    private const int AttrReductionDescriptor = 1612;
    private const int HeuristicsModeA = 3;

    /// <summary>cudnnBackendHeurMode_t: the instant mode A, the slower and broader mode B, and the fallback list.</summary>
    public const int CUDNN_HEUR_MODE_A = HeuristicsModeA, CUDNN_HEUR_MODE_B = 1, CUDNN_HEUR_MODE_FALLBACK = 2;

    /// <summary>Most knob choices read from one engine configuration (cuDNN 9 defines fewer knob types).</summary>
    private const int MaxKnobChoices = 64;

    /// <summary>cudnnConvolutionFwdAlgoPerf_t.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ConvolutionFwdAlgoPerf
    {
        public int Algo;
        public int Status;
        public float Time;
        public nuint Memory;
        public int Determinism;
        public int MathType;
        public int Reserved0;
        public int Reserved1;
        public int Reserved2;
    }

    [LibraryImport(Lib)] private static partial nuint cudnnGetVersion();
    [LibraryImport(Lib)] private static partial IntPtr cudnnGetErrorString(int status);
    [LibraryImport(Lib)] private static partial int cudnnCreate(out IntPtr handle);
    [LibraryImport(Lib)] internal static partial int cudnnDestroy(IntPtr handle);
    [LibraryImport(Lib)] private static partial int cudnnSetStream(IntPtr handle, IntPtr stream);
    [LibraryImport(Lib)] private static partial int cudnnGetStream(IntPtr handle, out IntPtr stream);
    [LibraryImport(Lib)] private static partial int cudnnCreateTensorDescriptor(out IntPtr desc);
    [LibraryImport(Lib)] internal static partial int cudnnDestroyTensorDescriptor(IntPtr desc);
    [LibraryImport(Lib)] private static partial int cudnnSetTensorNdDescriptor(IntPtr desc, int dataType, int nbDims, int* dims, int* strides);
    [LibraryImport(Lib)] private static partial int cudnnSetTensorNdDescriptorEx(IntPtr desc, int format, int dataType, int nbDims, int* dims);
    [LibraryImport(Lib)] private static partial int cudnnCreateFilterDescriptor(out IntPtr desc);
    [LibraryImport(Lib)] internal static partial int cudnnDestroyFilterDescriptor(IntPtr desc);
    [LibraryImport(Lib)] private static partial int cudnnSetFilterNdDescriptor(IntPtr desc, int dataType, int format, int nbDims, int* dims);
    [LibraryImport(Lib)] private static partial int cudnnCreateConvolutionDescriptor(out IntPtr desc);
    [LibraryImport(Lib)] internal static partial int cudnnDestroyConvolutionDescriptor(IntPtr desc);
    [LibraryImport(Lib)] private static partial int cudnnSetConvolutionNdDescriptor(IntPtr desc, int arrayLength, int* pads, int* strides, int* dilations, int mode, int computeType);
    [LibraryImport(Lib)] private static partial int cudnnSetConvolutionGroupCount(IntPtr desc, int groups);
    [LibraryImport(Lib)] private static partial int cudnnSetConvolutionMathType(IntPtr desc, int mathType);
    [LibraryImport(Lib)] private static partial int cudnnGetConvolutionNdForwardOutputDim(IntPtr conv, IntPtr x, IntPtr w, int nbDims, int* dims);
    [LibraryImport(Lib)] private static partial int cudnnGetConvolutionForwardAlgorithm_v7(IntPtr handle, IntPtr x, IntPtr w, IntPtr conv, IntPtr y, int requested, out int returned, ConvolutionFwdAlgoPerf* results);
    [LibraryImport(Lib)] private static partial int cudnnGetConvolutionForwardWorkspaceSize(IntPtr handle, IntPtr x, IntPtr w, IntPtr conv, IntPtr y, int algo, out nuint bytes);
    [LibraryImport(Lib)] private static partial int cudnnConvolutionForward(IntPtr handle, float* alpha, IntPtr x, ulong xData, IntPtr w, ulong wData, IntPtr conv, int algo, ulong workspace, nuint workspaceBytes, float* beta, IntPtr y, ulong yData);
    [LibraryImport(Lib)] private static partial int cudnnGetConvolutionBackwardDataAlgorithm_v7(IntPtr handle, IntPtr w, IntPtr dy, IntPtr conv, IntPtr dx, int requested, out int returned, ConvolutionFwdAlgoPerf* results);
    [LibraryImport(Lib)] private static partial int cudnnGetConvolutionBackwardDataWorkspaceSize(IntPtr handle, IntPtr w, IntPtr dy, IntPtr conv, IntPtr dx, int algo, out nuint bytes);
    [LibraryImport(Lib)] private static partial int cudnnConvolutionBackwardData(IntPtr handle, float* alpha, IntPtr w, ulong wData, IntPtr dy, ulong dyData, IntPtr conv, int algo, ulong workspace, nuint workspaceBytes, float* beta, IntPtr dx, ulong dxData);
    [LibraryImport(Lib)] private static partial int cudnnCreateActivationDescriptor(out IntPtr desc);
    [LibraryImport(Lib)] internal static partial int cudnnDestroyActivationDescriptor(IntPtr desc);
    [LibraryImport(Lib)] private static partial int cudnnSetActivationDescriptor(IntPtr desc, int mode, int reluNanOpt, double coef);
    [LibraryImport(Lib)] private static partial int cudnnConvolutionBiasActivationForward(IntPtr handle, float* alpha1, IntPtr x, ulong xData, IntPtr w, ulong wData, IntPtr conv, int algo, ulong workspace, nuint workspaceBytes, float* alpha2, IntPtr z, ulong zData, IntPtr bias, ulong biasData, IntPtr activation, IntPtr y, ulong yData);
    [LibraryImport(Lib)] private static partial void cudnnGetLastErrorString(byte* message, nuint maxSize);
    [LibraryImport(Lib)] private static partial int cudnnBackendCreateDescriptor(int descriptorType, out IntPtr descriptor);
    [LibraryImport(Lib)] internal static partial int cudnnBackendDestroyDescriptor(IntPtr descriptor);
    [LibraryImport(Lib)] private static partial int cudnnBackendFinalize(IntPtr descriptor);
    [LibraryImport(Lib)] private static partial int cudnnBackendSetAttribute(IntPtr descriptor, int attributeName, int attributeType, long elementCount, void* arrayOfElements);
    [LibraryImport(Lib)] private static partial int cudnnBackendGetAttribute(IntPtr descriptor, int attributeName, int attributeType, long requestedElementCount, out long elementCount, void* arrayOfElements);
    [LibraryImport(Lib)] private static partial int cudnnBackendExecute(IntPtr handle, IntPtr executionPlan, IntPtr variantPack);
    [LibraryImport(Lib)] private static partial int cudnnAddTensor(IntPtr handle, float* alpha, IntPtr a, ulong aData, float* beta, IntPtr c, ulong cData);

    public static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new CudaException("cuDNN", call, status, Marshal.PtrToStringUTF8(cudnnGetErrorString(status)) ?? "CUDNN_STATUS_" + status);
        }
    }

    public static string Version()
    {
        NativeLibraries.Load(NativeLibraries.Cudnn);
        var v = (long)cudnnGetVersion();
        return $"{v / 10000}.{v % 10000 / 100}.{v % 100}";
    }

    public static CudnnHandle Create(CudaStream stream)
    {
        NativeLibraries.Load(NativeLibraries.Cudnn);
        Check(cudnnCreate(out var h), "cudnnCreate");
        var handle = new CudnnHandle(h);
        Check(cudnnSetStream(h, stream.Handle), "cudnnSetStream");
        return handle;
    }

    public static void SetStream(CudnnHandle handle, IntPtr stream) => Check(cudnnSetStream(handle.Handle, stream), "cudnnSetStream");

    /// <summary>The stream the handle's calls go to (what a trial restores after borrowing the handle).</summary>
    public static IntPtr GetStream(CudnnHandle handle)
    {
        Check(cudnnGetStream(handle.Handle, out var stream), "cudnnGetStream");
        return stream;
    }

    /// <summary>
    /// A packed tensor descriptor, dimensions given as [N, C, spatial...]: row-major, or channels-last (NHWC) for 4-d
    /// shapes with <see cref="CUDNN_TENSOR_NHWC"/>; cuDNN wants at least 4 dimensions, so lower ranks get trailing 1s.
    /// </summary>
    public static CudnnTensorDescriptor Tensor(int dataType, IReadOnlyList<long> shape, int format = CUDNN_TENSOR_NCHW)
    {
        Check(cudnnCreateTensorDescriptor(out var d), "cudnnCreateTensorDescriptor");
        var desc = new CudnnTensorDescriptor(d);
        var n = Math.Max(4, shape.Count);
        var dims = stackalloc int[n];
        var strides = stackalloc int[n];
        for (var i = 0; i < n; i++)
        {
            dims[i] = i < shape.Count ? checked((int)shape[i]) : 1;
        }

        strides[n - 1] = 1;
        for (var i = n - 2; i >= 0; i--)
        {
            strides[i] = strides[i + 1] * dims[i + 1];
        }

        if (format == CUDNN_TENSOR_NHWC && n == 4)
        {
            (strides[1], strides[3], strides[2], strides[0]) = (1, dims[1], dims[1] * dims[3], dims[1] * dims[2] * dims[3]);
        }

        Check(cudnnSetTensorNdDescriptor(d, dataType, n, dims, strides), "cudnnSetTensorNdDescriptor");
        return desc;
    }

    /// <summary>
    /// A packed 4-d tensor descriptor, dimensions [N, C, H, W], in a format cuDNN lays out itself: the vectorized
    /// NCHW_VECT_C with <see cref="CUDNN_DATA_INT8x32"/> (32 channels of int8 side by side) that strided descriptors cannot say.
    /// </summary>
    public static CudnnTensorDescriptor TensorInFormat(int dataType, IReadOnlyList<long> shape, int format)
    {
        Check(cudnnCreateTensorDescriptor(out var d), "cudnnCreateTensorDescriptor");
        var desc = new CudnnTensorDescriptor(d);
        var dims = stackalloc int[shape.Count];
        for (var i = 0; i < shape.Count; i++)
        {
            dims[i] = checked((int)shape[i]);
        }

        Check(cudnnSetTensorNdDescriptorEx(d, format, dataType, shape.Count, dims), "cudnnSetTensorNdDescriptorEx");
        return desc;
    }

    /// <summary>A filter descriptor, dimensions [K, C, kh, kw]; stored that way, or as [K, kh, kw, C] with <see cref="CUDNN_TENSOR_NHWC"/>.</summary>
    public static CudnnFilterDescriptor Filter(int dataType, IReadOnlyList<long> shape, int format = CUDNN_TENSOR_NCHW)
    {
        Check(cudnnCreateFilterDescriptor(out var d), "cudnnCreateFilterDescriptor");
        var desc = new CudnnFilterDescriptor(d);
        var n = Math.Max(4, shape.Count);
        var dims = stackalloc int[n];
        for (var i = 0; i < n; i++)
        {
            dims[i] = i < shape.Count ? checked((int)shape[i]) : 1;
        }

        Check(cudnnSetFilterNdDescriptor(d, dataType, format, n, dims), "cudnnSetFilterNdDescriptor");
        return desc;
    }

    /// <summary>A cross-correlation descriptor; <paramref name="computeType"/> is the accumulator (<see cref="CUDNN_DATA_INT32"/> for int8 data).</summary>
    public static CudnnConvolutionDescriptor Convolution(int[] pads, int[] strides, int[] dilations, int groups, int mathType, int computeType = CUDNN_DATA_FLOAT)
    {
        Check(cudnnCreateConvolutionDescriptor(out var d), "cudnnCreateConvolutionDescriptor");
        var desc = new CudnnConvolutionDescriptor(d);
        fixed (int* p = pads, s = strides, dl = dilations)
        {
            Check(cudnnSetConvolutionNdDescriptor(d, pads.Length, p, s, dl, CUDNN_CROSS_CORRELATION, computeType), "cudnnSetConvolutionNdDescriptor");
        }

        Check(cudnnSetConvolutionGroupCount(d, groups), "cudnnSetConvolutionGroupCount");
        Check(cudnnSetConvolutionMathType(d, mathType), "cudnnSetConvolutionMathType");
        return desc;
    }

    public static void SetMathType(CudnnConvolutionDescriptor conv, int mathType) => Check(cudnnSetConvolutionMathType(conv.Handle, mathType), "cudnnSetConvolutionMathType");

    public static int[] OutputDims(CudnnConvolutionDescriptor conv, CudnnTensorDescriptor x, CudnnFilterDescriptor w, int rank)
    {
        var dims = new int[rank];
        fixed (int* d = dims)
        {
            Check(cudnnGetConvolutionNdForwardOutputDim(conv.Handle, x.Handle, w.Handle, rank, d), "cudnnGetConvolutionNdForwardOutputDim");
        }

        return dims;
    }

    /// <summary>The heuristics' algorithms, best first.</summary>
    public static ConvolutionFwdAlgoPerf[] ForwardAlgorithms(CudnnHandle handle, CudnnTensorDescriptor x, CudnnFilterDescriptor w, CudnnConvolutionDescriptor conv, CudnnTensorDescriptor y)
    {
        var results = new ConvolutionFwdAlgoPerf[16];
        int returned;
        fixed (ConvolutionFwdAlgoPerf* r = results)
        {
            Check(cudnnGetConvolutionForwardAlgorithm_v7(handle.Handle, x.Handle, w.Handle, conv.Handle, y.Handle, results.Length, out returned, r), "cudnnGetConvolutionForwardAlgorithm_v7");
        }

        return results[..returned];
    }

    public static long WorkspaceSize(CudnnHandle handle, CudnnTensorDescriptor x, CudnnFilterDescriptor w, CudnnConvolutionDescriptor conv, CudnnTensorDescriptor y, int algo)
    {
        Check(cudnnGetConvolutionForwardWorkspaceSize(handle.Handle, x.Handle, w.Handle, conv.Handle, y.Handle, algo, out var b), "cudnnGetConvolutionForwardWorkspaceSize");
        return (long)b;
    }

    /// <summary>y = alpha * conv(x, w) + beta * y; alpha scales the int32 accumulator before an int8 or float y is written.</summary>
    public static void ConvolutionForward(CudnnHandle handle, CudnnTensorDescriptor x, ulong xData, CudnnFilterDescriptor w, ulong wData, CudnnConvolutionDescriptor conv, int algo, ulong workspace, long workspaceBytes, float beta, CudnnTensorDescriptor y, ulong yData, float alpha = 1f)
    {
        Check(cudnnConvolutionForward(handle.Handle, &alpha, x.Handle, xData, w.Handle, wData, conv.Handle, algo, workspace, (nuint)workspaceBytes, &beta, y.Handle, yData), "cudnnConvolutionForward");
    }

    /// <summary>
    /// The heuristics' backward-data algorithms, best first (cudnnConvolutionBwdDataAlgoPerf_t has the forward struct's
    /// layout). Backward data of a convolution is the transposed convolution: <paramref name="dy"/> is its input,
    /// <paramref name="dx"/> its output.
    /// </summary>
    public static ConvolutionFwdAlgoPerf[] BackwardDataAlgorithms(CudnnHandle handle, CudnnFilterDescriptor w, CudnnTensorDescriptor dy, CudnnConvolutionDescriptor conv, CudnnTensorDescriptor dx)
    {
        var results = new ConvolutionFwdAlgoPerf[16];
        int returned;
        fixed (ConvolutionFwdAlgoPerf* r = results)
        {
            Check(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle.Handle, w.Handle, dy.Handle, conv.Handle, dx.Handle, results.Length, out returned, r), "cudnnGetConvolutionBackwardDataAlgorithm_v7");
        }

        return results[..returned];
    }

    public static long BackwardDataWorkspaceSize(CudnnHandle handle, CudnnFilterDescriptor w, CudnnTensorDescriptor dy, CudnnConvolutionDescriptor conv, CudnnTensorDescriptor dx, int algo)
    {
        Check(cudnnGetConvolutionBackwardDataWorkspaceSize(handle.Handle, w.Handle, dy.Handle, conv.Handle, dx.Handle, algo, out var b), "cudnnGetConvolutionBackwardDataWorkspaceSize");
        return (long)b;
    }

    /// <summary>dx = conv^T(dy, w): the transposed convolution of dy.</summary>
    public static void ConvolutionBackwardData(CudnnHandle handle, CudnnFilterDescriptor w, ulong wData, CudnnTensorDescriptor dy, ulong dyData, CudnnConvolutionDescriptor conv, int algo, ulong workspace, long workspaceBytes, CudnnTensorDescriptor dx, ulong dxData)
    {
        var alpha = 1f;
        var beta = 0f;
        Check(cudnnConvolutionBackwardData(handle.Handle, &alpha, w.Handle, wData, dy.Handle, dyData, conv.Handle, algo, workspace, (nuint)workspaceBytes, &beta, dx.Handle, dxData), "cudnnConvolutionBackwardData");
    }

    public static CudnnActivationDescriptor Activation(int mode)
    {
        Check(cudnnCreateActivationDescriptor(out var d), "cudnnCreateActivationDescriptor");
        var desc = new CudnnActivationDescriptor(d);
        Check(cudnnSetActivationDescriptor(d, mode, CUDNN_NOT_PROPAGATE_NAN, 0), "cudnnSetActivationDescriptor");
        return desc;
    }

    /// <summary>y = act(alpha1 * conv(x, w) + alpha2 * z + bias) in one call (z is y's shape; alpha2 = 0 ignores it).</summary>
    public static void ConvolutionBiasActivationForward(CudnnHandle handle, CudnnTensorDescriptor x, ulong xData, CudnnFilterDescriptor w, ulong wData, CudnnConvolutionDescriptor conv, int algo, ulong workspace, long workspaceBytes, float alpha2, CudnnTensorDescriptor z, ulong zData, CudnnTensorDescriptor bias, ulong biasData, CudnnActivationDescriptor activation, CudnnTensorDescriptor y, ulong yData, float alpha1 = 1f)
    {
        Check(cudnnConvolutionBiasActivationForward(handle.Handle, &alpha1, x.Handle, xData, w.Handle, wData, conv.Handle, algo, workspace, (nuint)workspaceBytes, &alpha2, z.Handle, zData, bias.Handle, biasData, activation.Handle, y.Handle, yData), "cudnnConvolutionBiasActivationForward");
    }

    public static void AddTensor(CudnnHandle handle, CudnnTensorDescriptor a, ulong aData, CudnnTensorDescriptor c, ulong cData)
    {
        var alpha = 1f;
        var beta = 1f;
        Check(cudnnAddTensor(handle.Handle, &alpha, a.Handle, aData, &beta, c.Handle, cData), "cudnnAddTensor");
    }
    /// <summary>A backend call's status checked, with cuDNN's last error message (which says which attribute or rule failed).</summary>
    private static void CheckBackend(int status, string call)
    {
        if (status == 0)
        {
            return;
        }

        var text = Marshal.PtrToStringUTF8(cudnnGetErrorString(status)) ?? "CUDNN_STATUS_" + status;
        try
        {
            var buffer = stackalloc byte[1024];
            cudnnGetLastErrorString(buffer, 1024);
            var last = Marshal.PtrToStringUTF8((IntPtr)buffer);
            text = string.IsNullOrWhiteSpace(last) ? text : $"{text} ({last.Trim()})";
        }
        catch (EntryPointNotFoundException)
        {
        }

        throw new CudaException("cuDNN", call, status, text);
    }

    private static IntPtr CreateBackend(int type, string what)
    {
        CheckBackend(cudnnBackendCreateDescriptor(type, out var d), $"cudnnBackendCreateDescriptor({what})");
        return d;
    }

    private static void Set(IntPtr d, int name, int type, long count, void* values, string what) =>
        CheckBackend(cudnnBackendSetAttribute(d, name, type, count, values), $"cudnnBackendSetAttribute({what})");

    private static void Finalize(IntPtr d, string what) => CheckBackend(cudnnBackendFinalize(d), $"cudnnBackendFinalize({what})");

    private static void SetDescriptor(IntPtr d, int name, NativeHandle value, string what)
    {
        var h = value.Handle;
        Set(d, name, TypeDescriptor, 1, &h, what);
    }

    /// <summary>
    /// A backend tensor: data type, dimensions and strides (element units), unique id; virtual ones live only inside a fused
    /// graph; a by-value one (<paramref name="isByValue"/>, a scalar such as attention's scale) is passed in the variant
    /// pack as the host address of its value.
    /// </summary>
    public static CudnnBackendTensor BackendTensorOf(long uid, int dataType, long[] dims, long[] strides, bool isVirtual, long alignment = 16, bool isByValue = false)
    {
        var t = new CudnnBackendTensor(CreateBackend(BackendTensor, "TENSOR"));
        var d = t.Handle;
        Set(d, AttrTensorDataType, TypeDataType, 1, &dataType, "TENSOR_DATA_TYPE");
        fixed (long* dp = dims, sp = strides)
        {
            Set(d, AttrTensorDimensions, TypeInt64, dims.Length, dp, "TENSOR_DIMENSIONS");
            Set(d, AttrTensorStrides, TypeInt64, strides.Length, sp, "TENSOR_STRIDES");
        }

        Set(d, AttrTensorUniqueId, TypeInt64, 1, &uid, "TENSOR_UNIQUE_ID");
        Set(d, AttrTensorAlignment, TypeInt64, 1, &alignment, "TENSOR_BYTE_ALIGNMENT");
        var v = isVirtual;
        Set(d, AttrTensorIsVirtual, TypeBoolean, 1, &v, "TENSOR_IS_VIRTUAL");
        if (isByValue)
        {
            var byValue = true;
            Set(d, AttrTensorIsByValue, TypeBoolean, 1, &byValue, "TENSOR_IS_BY_VALUE");
        }

        Finalize(d, "TENSOR");
        return t;
    }

    /// <summary>A backend cross-correlation descriptor over 2-d spatial dimensions with the given accumulator type.</summary>
    public static CudnnBackendConvolution BackendConvolutionOf(int computeType, long[] pads, long[] strides, long[] dilations)
    {
        var c = new CudnnBackendConvolution(CreateBackend(BackendConvolution, "CONVOLUTION"));
        var d = c.Handle;
        long spatial = pads.Length;
        var mode = CUDNN_CROSS_CORRELATION;
        Set(d, AttrConvolutionComputeType, TypeDataType, 1, &computeType, "CONVOLUTION_COMP_TYPE");
        Set(d, AttrConvolutionMode, TypeConvolutionMode, 1, &mode, "CONVOLUTION_CONV_MODE");
        Set(d, AttrConvolutionSpatialDims, TypeInt64, 1, &spatial, "CONVOLUTION_SPATIAL_DIMS");
        fixed (long* p = pads, st = strides, dl = dilations)
        {
            Set(d, AttrConvolutionPrePaddings, TypeInt64, pads.Length, p, "CONVOLUTION_PRE_PADDINGS");
            Set(d, AttrConvolutionPostPaddings, TypeInt64, pads.Length, p, "CONVOLUTION_POST_PADDINGS");
            Set(d, AttrConvolutionStrides, TypeInt64, strides.Length, st, "CONVOLUTION_FILTER_STRIDES");
            Set(d, AttrConvolutionDilations, TypeInt64, dilations.Length, dl, "CONVOLUTION_DILATIONS");
        }

        Finalize(d, "CONVOLUTION");
        return c;
    }

    /// <summary>Disposes a graph's engine configurations, then its descriptors last-made first, and empties both lists.</summary>
    public static void ReleaseGraph(List<CudnnBackendEngineConfig> configs, List<NativeHandle> descriptors)
    {
        foreach (var c in configs)
        {
            c.Dispose();
        }

        configs.Clear();
        for (var i = descriptors.Count - 1; i >= 0; i--)
        {
            descriptors[i].Dispose();
        }

        descriptors.Clear();
    }

    /// <summary>
    /// A backend pointwise descriptor (<see cref="CUDNN_POINTWISE_MUL"/>, ADD, RELU_FWD, SWISH_FWD with its default beta of
    /// 1, GELU_FWD, GELU_APPROX_TANH_FWD, SUB, DIV, EXP, LOG, CMP_LT, LOGICAL_AND, BINARY_SELECT, GEN_INDEX along
    /// <paramref name="axis"/>) computing in <paramref name="precision"/> (float unless given).
    /// </summary>
    public static CudnnBackendPointwise BackendPointwiseOf(int mode, int precision = CUDNN_DATA_FLOAT, long? axis = null)
    {
        var p = new CudnnBackendPointwise(CreateBackend(BackendPointwise, "POINTWISE"));
        var d = p.Handle;
        Set(d, AttrPointwiseMode, TypePointwiseMode, 1, &mode, "POINTWISE_MODE");
        Set(d, AttrPointwiseMathPrecision, TypeDataType, 1, &precision, "POINTWISE_MATH_PREC");
        if (axis is { } a)
        {
            Set(d, AttrPointwiseAxis, TypeInt64, 1, &a, "POINTWISE_AXIS");
        }

        Finalize(d, "POINTWISE");
        return p;
    }

    /// <summary>The graph's convolution node: y = conv(x, w) (alpha 1, beta 0).</summary>
    public static CudnnBackendConvolutionForward BackendConvolutionForwardOf(CudnnBackendConvolution conv, CudnnBackendTensor x, CudnnBackendTensor w, CudnnBackendTensor y)
    {
        var op = new CudnnBackendConvolutionForward(CreateBackend(BackendConvolutionForward, "OPERATION_CONVOLUTION_FORWARD"));
        var d = op.Handle;
        float alpha = 1f, beta = 0f;
        Set(d, AttrConvolutionForwardAlpha, TypeFloat, 1, &alpha, "OPERATION_CONVOLUTION_FORWARD_ALPHA");
        Set(d, AttrConvolutionForwardBeta, TypeFloat, 1, &beta, "OPERATION_CONVOLUTION_FORWARD_BETA");
        SetDescriptor(d, AttrConvolutionForwardDescriptor, conv, "OPERATION_CONVOLUTION_FORWARD_CONV_DESC");
        SetDescriptor(d, AttrConvolutionForwardX, x, "OPERATION_CONVOLUTION_FORWARD_X");
        SetDescriptor(d, AttrConvolutionForwardW, w, "OPERATION_CONVOLUTION_FORWARD_W");
        SetDescriptor(d, AttrConvolutionForwardY, y, "OPERATION_CONVOLUTION_FORWARD_Y");
        Finalize(d, "OPERATION_CONVOLUTION_FORWARD");
        return op;
    }

    /// <summary>The graph's pointwise node: y = op(x[, b][, t]) (b and t broadcast where their dimensions are 1; t is BINARY_SELECT's condition).</summary>
    public static CudnnBackendPointwiseOperation BackendPointwiseOperationOf(CudnnBackendPointwise pointwise, CudnnBackendTensor x, CudnnBackendTensor? b, CudnnBackendTensor y, CudnnBackendTensor? t = null)
    {
        var op = new CudnnBackendPointwiseOperation(CreateBackend(BackendPointwiseOperation, "OPERATION_POINTWISE"));
        var d = op.Handle;
        SetDescriptor(d, AttrPointwiseDescriptor, pointwise, "OPERATION_POINTWISE_PW_DESCRIPTOR");
        SetDescriptor(d, AttrPointwiseX, x, "OPERATION_POINTWISE_XDESC");
        if (b is not null)
        {
            SetDescriptor(d, AttrPointwiseB, b, "OPERATION_POINTWISE_BDESC");
        }

        if (t is not null)
        {
            SetDescriptor(d, AttrPointwiseT, t, "OPERATION_POINTWISE_TDESC");
        }

        SetDescriptor(d, AttrPointwiseY, y, "OPERATION_POINTWISE_YDESC");
        Finalize(d, "OPERATION_POINTWISE");
        return op;
    }

    /// <summary>
    /// A backend matmul descriptor with the given accumulator type (<see cref="CUDNN_DATA_FLOAT"/>); with
    /// <paramref name="paddingValue"/>, what it writes where an M or N override leaves an element out.
    /// </summary>
    public static CudnnBackendMatmul BackendMatmulOf(int computeType, double? paddingValue = null)
    {
        var m = new CudnnBackendMatmul(CreateBackend(BackendMatmul, "MATMUL"));
        var d = m.Handle;
        Set(d, AttrMatmulComputeType, TypeDataType, 1, &computeType, "MATMUL_COMP_TYPE");
        if (paddingValue is { } padding)
        {
            Set(d, AttrMatmulPaddingValue, TypeDouble, 1, &padding, "MATMUL_PADDING_VALUE");
        }

        Finalize(d, "MATMUL");
        return m;
    }

    /// <summary>
    /// The graph's matmul node: c = a b over the last two dimensions ([.., M, K] x [.., K, N] -> [.., M, N]), the leading
    /// ones batched (a transposed operand is said through its strides); M, N and K overridden per batch item by int32
    /// tensors where given (a padded sequence's true lengths).
    /// </summary>
    public static CudnnBackendMatmulOperation BackendMatmulOperationOf(CudnnBackendMatmul matmul, CudnnBackendTensor a, CudnnBackendTensor b, CudnnBackendTensor c, CudnnBackendTensor? mOverride = null, CudnnBackendTensor? nOverride = null, CudnnBackendTensor? kOverride = null)
    {
        var op = new CudnnBackendMatmulOperation(CreateBackend(BackendMatmulOperation, "OPERATION_MATMUL"));
        var d = op.Handle;
        SetDescriptor(d, AttrMatmulA, a, "OPERATION_MATMUL_ADESC");
        SetDescriptor(d, AttrMatmulB, b, "OPERATION_MATMUL_BDESC");
        SetDescriptor(d, AttrMatmulC, c, "OPERATION_MATMUL_CDESC");
        SetDescriptor(d, AttrMatmulDescriptor, matmul, "OPERATION_MATMUL_DESC");
        foreach (var (name, tensor, what) in new[] { (AttrMatmulMOverride, mOverride, "GEMM_M_OVERRIDE_DESC"), (AttrMatmulNOverride, nOverride, "GEMM_N_OVERRIDE_DESC"), (AttrMatmulKOverride, kOverride, "GEMM_K_OVERRIDE_DESC") })
        {
            if (tensor is not null)
            {
                SetDescriptor(d, name, tensor, "OPERATION_MATMUL_" + what);
            }
        }

        Finalize(d, "OPERATION_MATMUL");
        return op;
    }

    /// <summary>A backend reduction descriptor: <paramref name="reduceOp"/> (<see cref="CUDNN_REDUCE_TENSOR_ADD"/>, MAX) computing in <paramref name="computeType"/>.</summary>
    public static CudnnBackendReduction BackendReductionOf(int reduceOp, int computeType)
    {
        var r = new CudnnBackendReduction(CreateBackend(BackendReduction, "REDUCTION"));
        var d = r.Handle;
        Set(d, AttrReductionComputeType, TypeDataType, 1, &computeType, "REDUCTION_COMP_TYPE");
        Set(d, AttrReductionOperator, TypeReductionOperator, 1, &reduceOp, "REDUCTION_OPERATOR");
        Finalize(d, "REDUCTION");
        return r;
    }

    /// <summary>The graph's reduction node: y = reduce(x) over the dimensions where y's are 1 and x's are not.</summary>
    public static CudnnBackendReductionOperation BackendReductionOperationOf(CudnnBackendReduction reduction, CudnnBackendTensor x, CudnnBackendTensor y)
    {
        var op = new CudnnBackendReductionOperation(CreateBackend(BackendReductionOperation, "OPERATION_REDUCTION"));
        var d = op.Handle;
        SetDescriptor(d, AttrReductionDescriptor, reduction, "OPERATION_REDUCTION_DESC");
        SetDescriptor(d, AttrReductionX, x, "OPERATION_REDUCTION_XDESC");
        SetDescriptor(d, AttrReductionY, y, "OPERATION_REDUCTION_YDESC");
        Finalize(d, "OPERATION_REDUCTION");
        return op;
    }

    /// <summary>An operation graph of the given nodes (convolution and pointwise operations) for one cuDNN handle.</summary>
    public static CudnnBackendOperationGraph BackendGraphOf(CudnnHandle handle, IReadOnlyList<NativeHandle> operations)
    {
        var g = new CudnnBackendOperationGraph(CreateBackend(BackendOperationGraph, "OPERATIONGRAPH"));
        var d = g.Handle;
        var h = handle.Handle;
        var ops = operations.Select(o => o.Handle).ToArray();
        Set(d, AttrGraphHandle, TypeHandle, 1, &h, "OPERATIONGRAPH_HANDLE");
        fixed (IntPtr* p = ops)
        {
            Set(d, AttrGraphOperations, TypeDescriptor, ops.Length, p, "OPERATIONGRAPH_OPS");
        }

        Finalize(d, "OPERATIONGRAPH");
        return g;
    }

    /// <summary>
    /// The first engine configuration of cuDNN's heuristics (mode A) that finalizes into an execution plan for the graph,
    /// with its workspace; the configurations it tried are returned too (they live as long as the plan uses them).
    /// </summary>
    public static (CudnnBackendExecutionPlan Plan, long WorkspaceBytes, List<CudnnBackendEngineConfig> Configs) BackendPlanOf(CudnnHandle handle, CudnnBackendOperationGraph graph)
    {
        var configs = BackendConfigsOf(graph);
        try
        {
            var chosen = BackendPlansOf(handle, configs, "this graph")[0];
            return (chosen.Plan, chosen.WorkspaceBytes, configs);
        }
        catch (CudaException)
        {
            foreach (var c in configs)
            {
                c.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Execution plans of the first <paramref name="count"/> of <paramref name="configs"/> (heuristics' order, which must
    /// outlive them) that finalize, with each one's workspace, engine and place in <paramref name="configs"/>; where none
    /// does, the first refusal (or, with no configuration at all, CUDNN_STATUS_NOT_SUPPORTED naming <paramref name="what"/>)
    /// as a <see cref="CudaException"/>.
    /// </summary>
    public static List<CudnnBackendPlan> BackendPlansOf(CudnnHandle handle, IReadOnlyList<CudnnBackendEngineConfig> configs, string what, int count = 1)
    {
        var plans = new List<CudnnBackendPlan>();
        CudaException? first = null;
        for (var i = 0; i < configs.Count; i++)
        {
            if (plans.Count >= count)
            {
                break;
            }

            try
            {
                var (engine, compiled, _) = BackendEngineOf(configs[i]);
                var (plan, workspace) = BackendPlanOf(handle, configs[i]);
                plans.Add(new CudnnBackendPlan(plan, workspace, engine, compiled, i));
            }
            catch (CudaException e)
            {
                first ??= e;
            }
        }

        return plans.Count > 0 ? plans
            : throw first ?? new CudaException("cuDNN", "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)", 3000, $"CUDNN_STATUS_NOT_SUPPORTED: the heuristics offer no engine for {what}");
    }

    /// <summary>Every engine configuration cuDNN's heuristics (<paramref name="mode"/>, by default A) offer for the graph, best first (the caller disposes them).</summary>
    public static List<CudnnBackendEngineConfig> BackendConfigsOf(CudnnBackendOperationGraph graph, int mode = HeuristicsModeA)
    {
        using var heuristics = new CudnnBackendEngineHeuristics(CreateBackend(BackendEngineHeuristics, "ENGINEHEUR"));
        var hd = heuristics.Handle;
        SetDescriptor(hd, AttrHeuristicsGraph, graph, "ENGINEHEUR_OPERATION_GRAPH");
        Set(hd, AttrHeuristicsMode, TypeHeuristicsMode, 1, &mode, "ENGINEHEUR_MODE");
        Finalize(hd, "ENGINEHEUR");
        CheckBackend(cudnnBackendGetAttribute(hd, AttrHeuristicsResults, TypeDescriptor, 0, out var count, null), "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS count)");
        var configs = new List<CudnnBackendEngineConfig>();
        for (var i = 0; i < count; i++)
        {
            configs.Add(new CudnnBackendEngineConfig(CreateBackend(BackendEngineConfig, "ENGINECFG")));
        }

        var raw = configs.Select(c => c.Handle).ToArray();
        long returned = 0;
        if (raw.Length > 0)
        {
            fixed (IntPtr* p = raw)
            {
                CheckBackend(cudnnBackendGetAttribute(hd, AttrHeuristicsResults, TypeDescriptor, raw.Length, out returned, p), "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)");
            }
        }

        foreach (var extra in configs.Skip((int)returned))
        {
            extra.Dispose();
        }

        return [.. configs.Take((int)returned)];
    }

    /// <summary>The execution plan of one engine configuration (which must outlive it), with its workspace; cuDNN's refusal as a <see cref="CudaException"/>.</summary>
    public static (CudnnBackendExecutionPlan Plan, long WorkspaceBytes) BackendPlanOf(CudnnHandle handle, CudnnBackendEngineConfig config)
    {
        var plan = new CudnnBackendExecutionPlan(CreateBackend(BackendExecutionPlan, "EXECUTION_PLAN"));
        try
        {
            var h = handle.Handle;
            Set(plan.Handle, AttrPlanHandle, TypeHandle, 1, &h, "EXECUTION_PLAN_HANDLE");
            SetDescriptor(plan.Handle, AttrPlanEngineConfig, config, "EXECUTION_PLAN_ENGINE_CONFIG");
            Finalize(plan.Handle, "EXECUTION_PLAN");
            long workspace = 0;
            CheckBackend(cudnnBackendGetAttribute(plan.Handle, AttrPlanWorkspaceSize, TypeInt64, 1, out _, &workspace), "cudnnBackendGetAttribute(EXECUTION_PLAN_WORKSPACE_SIZE)");
            return (plan, workspace);
        }
        catch
        {
            plan.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The engine behind an engine configuration: cuDNN's global index of it (what names it in cuDNN's logs and errata) and
    /// whether it compiles its kernel at run time (the runtime fusion engines), and whether it wants the filter or bias
    /// reordered for it first (cudnnReorderFilterAndBias's int8x32 order, CUDNN_BEHAVIOR_NOTE_REQUIRES_*_INT8x32_REORDER).
    /// </summary>
    public static (long GlobalIndex, bool RuntimeCompiled, bool RequiresReorder) BackendEngineOf(CudnnBackendEngineConfig config)
    {
        var engine = CreateBackend(BackendEngine, "ENGINE");
        try
        {
            CheckBackend(cudnnBackendGetAttribute(config.Handle, AttrEngineConfigEngine, TypeDescriptor, 1, out _, &engine), "cudnnBackendGetAttribute(ENGINECFG_ENGINE)");
            long index = -1;
            CheckBackend(cudnnBackendGetAttribute(engine, AttrEngineGlobalIndex, TypeInt64, 1, out _, &index), "cudnnBackendGetAttribute(ENGINE_GLOBAL_INDEX)");
            var notes = stackalloc int[16];
            var (runtime, reorder) = (false, false);
            if (cudnnBackendGetAttribute(engine, AttrEngineBehaviorNote, TypeBehaviorNote, 16, out var count, notes) == 0)
            {
                for (var i = 0; i < Math.Min(count, 16); i++)
                {
                    runtime |= notes[i] == BehaviorNoteRuntimeCompilation;
                    reorder |= notes[i] is BehaviorNoteFilterReorder or BehaviorNoteBiasReorder;
                }
            }

            return (index, runtime, reorder);
        }
        finally
        {
            _ = cudnnBackendDestroyDescriptor(engine);
        }
    }

    /// <summary>
    /// The knob choices of an engine configuration (cudnnBackendKnobType_t and value, sorted by type): with the engine's
    /// global index what tells two configurations apart (cudnn-frontend's plan tag "eng4_k2=1_k3=0" is made of the same).
    /// </summary>
    public static (int Type, long Value)[] BackendKnobsOf(CudnnBackendEngineConfig config)
    {
        var choices = new IntPtr[MaxKnobChoices];
        var created = 0;
        try
        {
            for (; created < choices.Length; created++)
            {
                choices[created] = CreateBackend(BackendKnobChoice, "KNOB_CHOICE");
            }

            long count;
            fixed (IntPtr* p = choices)
            {
                CheckBackend(cudnnBackendGetAttribute(config.Handle, AttrEngineConfigKnobChoices, TypeDescriptor, choices.Length, out count, p), "cudnnBackendGetAttribute(ENGINECFG_KNOB_CHOICES)");
            }

            var knobs = new (int Type, long Value)[Math.Min(count, choices.Length)];
            for (var i = 0; i < knobs.Length; i++)
            {
                int type;
                long value;
                CheckBackend(cudnnBackendGetAttribute(choices[i], AttrKnobChoiceType, TypeKnobType, 1, out _, &type), "cudnnBackendGetAttribute(KNOB_CHOICE_KNOB_TYPE)");
                CheckBackend(cudnnBackendGetAttribute(choices[i], AttrKnobChoiceValue, TypeInt64, 1, out _, &value), "cudnnBackendGetAttribute(KNOB_CHOICE_KNOB_VALUE)");
                knobs[i] = (type, value);
            }

            Array.Sort(knobs);
            return knobs;
        }
        finally
        {
            for (var i = 0; i < created; i++)
            {
                _ = cudnnBackendDestroyDescriptor(choices[i]);
            }
        }
    }

    /// <summary>The device addresses of a graph's tensors by unique id, and the workspace, for one execution.</summary>
    public static CudnnBackendVariantPack BackendVariantPackOf(long[] uids, ulong[] pointers, ulong workspace)
    {
        var v = new CudnnBackendVariantPack(CreateBackend(BackendVariantPack, "VARIANT_PACK"));
        var d = v.Handle;
        fixed (long* u = uids)
        fixed (ulong* p = pointers)
        {
            Set(d, AttrVariantUniqueIds, TypeInt64, uids.Length, u, "VARIANT_PACK_UNIQUE_IDS");
            Set(d, AttrVariantPointers, TypeVoidPointer, pointers.Length, p, "VARIANT_PACK_DATA_POINTERS");
        }

        Set(d, AttrVariantWorkspace, TypeVoidPointer, 1, &workspace, "VARIANT_PACK_WORKSPACE");
        Finalize(d, "VARIANT_PACK");
        return v;
    }

    /// <summary>Runs an execution plan on the handle's stream with the variant pack's addresses.</summary>
    public static void BackendExecute(CudnnHandle handle, CudnnBackendExecutionPlan plan, CudnnBackendVariantPack pack) =>
        CheckBackend(cudnnBackendExecute(handle.Handle, plan.Handle, pack.Handle), "cudnnBackendExecute");
}

/// <summary>A cuDNN library handle.</summary>
internal sealed class CudnnHandle : NativeHandle
{
    public CudnnHandle(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnDestroy(handle) == 0;
}

/// <summary>A cuDNN tensor descriptor (cudnnTensorDescriptor_t).</summary>
internal sealed class CudnnTensorDescriptor : NativeHandle
{
    public CudnnTensorDescriptor(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnDestroyTensorDescriptor(handle) == 0;
}

/// <summary>A cuDNN filter descriptor (cudnnFilterDescriptor_t).</summary>
internal sealed class CudnnFilterDescriptor : NativeHandle
{
    public CudnnFilterDescriptor(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnDestroyFilterDescriptor(handle) == 0;
}

/// <summary>A cuDNN convolution descriptor (cudnnConvolutionDescriptor_t).</summary>
internal sealed class CudnnConvolutionDescriptor : NativeHandle
{
    public CudnnConvolutionDescriptor(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnDestroyConvolutionDescriptor(handle) == 0;
}

/// <summary>A cuDNN activation descriptor (cudnnActivationDescriptor_t).</summary>
internal sealed class CudnnActivationDescriptor : NativeHandle
{
    public CudnnActivationDescriptor(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnDestroyActivationDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend tensor descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendTensor : NativeHandle
{
    public CudnnBackendTensor(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend convolution descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendConvolution : NativeHandle
{
    public CudnnBackendConvolution(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend pointwise operator descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendPointwise : NativeHandle
{
    public CudnnBackendPointwise(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend convolution-forward operation descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendConvolutionForward : NativeHandle
{
    public CudnnBackendConvolutionForward(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend pointwise operation descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendPointwiseOperation : NativeHandle
{
    public CudnnBackendPointwiseOperation(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>An execution plan finalized from one engine configuration: its workspace, the engine's global index, whether it compiles its kernel at run time and the configuration's place in the list it was built from.</summary>
internal readonly record struct CudnnBackendPlan(CudnnBackendExecutionPlan Plan, long WorkspaceBytes, long Engine, bool RuntimeCompiled, int Configuration = 0);

/// <summary>A cuDNN backend matmul descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendMatmul : NativeHandle
{
    public CudnnBackendMatmul(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend matmul operation descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendMatmulOperation : NativeHandle
{
    public CudnnBackendMatmulOperation(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend reduction descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendReduction : NativeHandle
{
    public CudnnBackendReduction(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend reduction operation descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendReductionOperation : NativeHandle
{
    public CudnnBackendReductionOperation(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend operation graph descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendOperationGraph : NativeHandle
{
    public CudnnBackendOperationGraph(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend engine heuristics query descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendEngineHeuristics : NativeHandle
{
    public CudnnBackendEngineHeuristics(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend engine configuration descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendEngineConfig : NativeHandle
{
    public CudnnBackendEngineConfig(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend execution plan descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendExecutionPlan : NativeHandle
{
    public CudnnBackendExecutionPlan(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}

/// <summary>A cuDNN backend variant pack descriptor (cudnnBackendDescriptor_t of that type).</summary>
internal sealed class CudnnBackendVariantPack : NativeHandle
{
    public CudnnBackendVariantPack(IntPtr h)
        : base(h)
    {
    }

    protected override bool ReleaseHandle() => Cudnn.cudnnBackendDestroyDescriptor(handle) == 0;
}
