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
