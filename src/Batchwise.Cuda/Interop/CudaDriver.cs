using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>The CUDA driver API (libcuda.so.1): devices, the primary context, memory, streams, events, modules, launches.</summary>
internal static unsafe partial class CudaDriver
{
    private const string Lib = "batchwise_cuda";

    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13;
    public const int CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36;
    public const int CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37;
    public const int CU_DEVICE_ATTRIBUTE_PCI_BUS_ID = 33;
    public const int CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID = 34;
    public const int CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID = 50;
    public const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public const int CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38;
    public const int CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3;
    public const int CU_FUNC_ATTRIBUTE_NUM_REGS = 4;
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    public const int CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT = 9;
    public const int CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED = 14;
    public const int CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;
    public const int CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW = 1;
    public const int CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE = 108;
    public const int CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE = 109;
    public const int CU_LIMIT_PERSISTING_L2_CACHE_SIZE = 6;
    public const int CU_GRAPH_NODE_TYPE_KERNEL = 0;
    public const int CU_ACCESS_PROPERTY_NORMAL = 0;
    public const int CU_ACCESS_PROPERTY_PERSISTING = 2;
    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const uint CU_EVENT_DEFAULT = 0;
    public const uint CU_EVENT_DISABLE_TIMING = 2;
    public const uint CU_MEMHOSTALLOC_PORTABLE = 1;
    public const uint CU_MEMHOSTALLOC_DEVICEMAP = 2;
    public const uint CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1;

    private static int _initialized;
    private static BatchwiseException? _initError;

    [LibraryImport(Lib)] private static partial int cuInit(uint flags);
    [LibraryImport(Lib)] private static partial int cuDriverGetVersion(out int version);
    [LibraryImport(Lib)] private static partial int cuGetErrorName(int error, out IntPtr name);
    [LibraryImport(Lib)] private static partial int cuGetErrorString(int error, out IntPtr text);
    [LibraryImport(Lib)] private static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] private static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] private static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] private static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] private static partial int cuDeviceTotalMem(out nuint bytes, int device);
    [LibraryImport(Lib)] private static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib)] private static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Lib)] private static partial int cuCtxGetCurrent(out IntPtr context);
    [LibraryImport(Lib)] private static partial int cuCtxGetDevice(out int device);
    [LibraryImport(Lib)] private static partial int cuCtxSetLimit(int limit, nuint value);
    [LibraryImport(Lib)] private static partial int cuCtxGetLimit(out nuint value, int limit);
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] private static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] private static partial int cuMemAlloc(out ulong pointer, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] internal static partial int cuMemFree(ulong pointer);
    [LibraryImport(Lib)] private static partial int cuMemHostAlloc(out IntPtr pointer, nuint bytes, uint flags);
    [LibraryImport(Lib)] internal static partial int cuMemFreeHost(IntPtr pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemHostRegister_v2")] private static partial int cuMemHostRegister(IntPtr pointer, nuint bytes, uint flags);
    [LibraryImport(Lib)] internal static partial int cuMemHostUnregister(IntPtr pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemHostGetDevicePointer_v2")] private static partial int cuMemHostGetDevicePointer(out ulong device, IntPtr host, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] private static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] private static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] private static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuStreamCreate(out IntPtr stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] internal static partial int cuStreamDestroy(IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuStreamSynchronize(IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuEventCreate(out IntPtr evt, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] internal static partial int cuEventDestroy(IntPtr evt);
    [LibraryImport(Lib)] private static partial int cuEventRecord(IntPtr evt, IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuStreamWaitEvent(IntPtr stream, IntPtr evt, uint flags);
    [LibraryImport(Lib)] private static partial int cuEventSynchronize(IntPtr evt);
    [LibraryImport(Lib)] private static partial int cuEventElapsedTime(out float milliseconds, IntPtr start, IntPtr end);
    [LibraryImport(Lib)] private static partial int cuModuleLoadData(out IntPtr module, void* image);
    [LibraryImport(Lib)] internal static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(Lib)] private static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, byte* name);
    [LibraryImport(Lib)] private static partial int cuFuncGetAttribute(out int value, int attribute, IntPtr function);
    [LibraryImport(Lib)] private static partial int cuFuncSetAttribute(IntPtr function, int attribute, int value);
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] private static partial int cuStreamBeginCapture(IntPtr stream, int mode);
    [LibraryImport(Lib)] private static partial int cuStreamEndCapture(IntPtr stream, out IntPtr graph);
    [LibraryImport(Lib)] private static partial int cuGraphInstantiateWithFlags(out IntPtr exec, IntPtr graph, ulong flags);
    [LibraryImport(Lib)] private static partial int cuGraphLaunch(IntPtr exec, IntPtr stream);
    [LibraryImport(Lib)] private static partial int cuGraphDestroy(IntPtr graph);
    [LibraryImport(Lib)] private static partial int cuGraphGetNodes(IntPtr graph, IntPtr* nodes, nuint* count);
    [LibraryImport(Lib)] private static partial int cuGraphNodeGetType(IntPtr node, out int type);
    [LibraryImport(Lib)] private static partial int cuGraphKernelNodeSetAttribute(IntPtr node, int attribute, byte* value);
    [LibraryImport(Lib)] internal static partial int cuGraphExecDestroy(IntPtr exec);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")] private static partial int cuMemcpyHtoD(ulong dst, void* src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")] private static partial int cuMemcpyDtoH(void* dst, ulong src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemGetAddressRange_v2")] private static partial int cuMemGetAddressRange(out ulong pbase, out nuint size, ulong pointer);
    [LibraryImport(Lib)] private static partial int cuIpcGetMemHandle(IpcMemHandle* handle, ulong pointer);
    [LibraryImport(Lib, EntryPoint = "cuIpcOpenMemHandle_v2")] private static partial int cuIpcOpenMemHandle(out ulong pointer, IpcMemHandle handle, uint flags);
    [LibraryImport(Lib)] internal static partial int cuIpcCloseMemHandle(ulong pointer);
    [LibraryImport(Lib)] private static partial int cuLaunchKernel(IntPtr f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, uint sharedBytes, IntPtr stream, void** args, void** extra);
    [LibraryImport(Lib)] private static partial int cuLaunchKernelEx(LaunchConfig* config, IntPtr f, void** args, void** extra);
    [LibraryImport(Lib)] private static partial int cuTensorMapEncodeTiled(void* tensorMap, int dataType, uint rank, ulong globalAddress, ulong* globalDim, ulong* globalStrides, uint* boxDim, uint* elementStrides, int interleave, int swizzle, int l2Promotion, int oobFill);

    /// <summary>Initialises the driver once; throws a one-line "no NVIDIA GPU" error where there is none.</summary>
    public static void Initialize()
    {
        if (Volatile.Read(ref _initialized) == 1)
        {
            return;
        }

        lock (typeof(CudaDriver))
        {
            if (_initError is not null)
            {
                throw _initError;
            }

            if (_initialized == 1)
            {
                return;
            }

            try
            {
                NativeLibraries.Load(NativeLibraries.Driver);
            }
            catch (BatchwiseException e)
            {
                _initError = new BatchwiseException($"no NVIDIA GPU found ({e.Message})", "Run on a machine with an NVIDIA GPU and driver, or use --engine ort.", e);
                throw _initError;
            }

            var status = cuInit(0);
            if (status != 0)
            {
                _initError = new BatchwiseException($"no NVIDIA GPU found (cuInit failed: {ErrorText(status)})", "Check nvidia-smi works and CUDA_VISIBLE_DEVICES, or use --engine ort.");
                throw _initError;
            }

            Check(cuDeviceGetCount(out var count), "cuDeviceGetCount");
            if (count == 0)
            {
                _initError = new BatchwiseException("no NVIDIA GPU found (the driver reports 0 devices)", "Check CUDA_VISIBLE_DEVICES, or use --engine ort.");
                throw _initError;
            }

            Volatile.Write(ref _initialized, 1);
        }
    }

    /// <summary>Throws naming the call and the driver's own error name and text.</summary>
    public static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new CudaException("CUDA driver", call, status, ErrorText(status));
        }
    }

    private static string ErrorText(int status)
    {
        try
        {
            var name = cuGetErrorName(status, out var n) == 0 ? Marshal.PtrToStringUTF8(n) : null;
            var text = cuGetErrorString(status, out var t) == 0 ? Marshal.PtrToStringUTF8(t) : null;
            return $"{name ?? "CUDA_ERROR_" + status}: {text ?? "unknown error"}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BatchwiseException)
        {
            return "CUresult " + status;
        }
    }

    public static int DriverVersion()
    {
        Check(cuDriverGetVersion(out var v), "cuDriverGetVersion");
        return v;
    }

    public static int DeviceCount()
    {
        Initialize();
        Check(cuDeviceGetCount(out var c), "cuDeviceGetCount");
        return c;
    }

    public static int Device(int ordinal)
    {
        Initialize();
        var count = DeviceCount();
        if (ordinal < 0 || ordinal >= count)
        {
            throw new BatchwiseException($"GPU {ordinal} does not exist; this machine has {count} (0 to {count - 1})", "Pick another --device.");
        }

        Check(cuDeviceGet(out var d, ordinal), "cuDeviceGet");
        return d;
    }

    public static string DeviceName(int device)
    {
        var buffer = stackalloc byte[256];
        Check(cuDeviceGetName(buffer, 256, device), "cuDeviceGetName");
        return Marshal.PtrToStringUTF8((IntPtr)buffer) ?? "?";
    }

    public static int Attribute(int device, int attribute)
    {
        Check(cuDeviceGetAttribute(out var v, attribute, device), "cuDeviceGetAttribute");
        return v;
    }

    public static long TotalMemory(int device)
    {
        Check(cuDeviceTotalMem(out var b, device), "cuDeviceTotalMem");
        return (long)b;
    }

    public static string PciBusId(int device) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Attribute(device, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID):x8}:{Attribute(device, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID):x2}:{Attribute(device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID):x2}.0");

    public static IntPtr RetainPrimaryContext(int device)
    {
        Check(cuDevicePrimaryCtxRetain(out var ctx, device), "cuDevicePrimaryCtxRetain");
        return ctx;
    }

    public static void SetCurrent(IntPtr context) => Check(cuCtxSetCurrent(context), "cuCtxSetCurrent");

    /// <summary>The calling thread's current context (to make it current on a worker thread).</summary>
    public static IntPtr CurrentContext()
    {
        Check(cuCtxGetCurrent(out var ctx), "cuCtxGetCurrent");
        return ctx;
    }

    public static (long Free, long Total) MemoryInfo()
    {
        Check(cuMemGetInfo(out var f, out var t), "cuMemGetInfo");
        return ((long)f, (long)t);
    }

    public static DeviceMemory Allocate(long bytes)
    {
        var status = cuMemAlloc(out var p, (nuint)Math.Max(bytes, 1));
        if (status == 2)
        {
            var (free, total) = MemoryInfo();
            throw new BatchwiseException($"Out of GPU memory: {bytes / 1048576.0:F1} MiB asked, {free / 1048576.0:F0} of {total / 1048576.0:F0} MiB free", "Use a smaller batch size or input.");
        }

        Check(status, "cuMemAlloc");
        var handle = new DeviceMemory();
        handle.Set(p, bytes);
        return handle;
    }

    public static PinnedHostMemory AllocatePinned(long bytes, bool mapped = false)
    {
        Check(cuMemHostAlloc(out var p, (nuint)Math.Max(bytes, 1), CU_MEMHOSTALLOC_PORTABLE | (mapped ? CU_MEMHOSTALLOC_DEVICEMAP : 0)), "cuMemHostAlloc");
        var handle = new PinnedHostMemory(bytes);
        handle.Set(p);
        return handle;
    }

    /// <summary>The device address of mapped page-locked host memory (what a kernel reads to see the host's writes).</summary>
    public static ulong DevicePointer(PinnedHostMemory memory)
    {
        Check(cuMemHostGetDevicePointer(out var d, memory.DangerousGetHandle(), 0), "cuMemHostGetDevicePointer");
        return d;
    }

    /// <summary>cuMemHostRegister flag: the range is page-locked for every context, not only the current one.</summary>
    public const uint CU_MEMHOSTREGISTER_PORTABLE = 1;

    /// <summary>Page-locks an existing host range for the GPU (cuMemHostRegister); the driver's status code (0: registered).</summary>
    public static int TryHostRegister(IntPtr pointer, long bytes, uint flags) => cuMemHostRegister(pointer, (nuint)bytes, flags);

    /// <summary>The driver's name and text for a status code.</summary>
    public static string Describe(int status) => ErrorText(status);

    public static void CopyToDevice(ulong dst, void* src, long bytes, CudaStream stream) => Check(cuMemcpyHtoDAsync(dst, src, (nuint)bytes, stream.Handle), "cuMemcpyHtoDAsync");

    public static void CopyToHost(void* dst, ulong src, long bytes, CudaStream stream) => Check(cuMemcpyDtoHAsync(dst, src, (nuint)bytes, stream.Handle), "cuMemcpyDtoHAsync");

    public static void CopyDeviceToDevice(ulong dst, ulong src, long bytes, IntPtr stream) => Check(cuMemcpyDtoDAsync(dst, src, (nuint)bytes, stream), "cuMemcpyDtoDAsync");

    public static void MemsetD8(ulong dst, byte value, long count, IntPtr stream) => Check(cuMemsetD8Async(dst, value, (nuint)count, stream), "cuMemsetD8Async");

    public static void MemsetD32(ulong dst, uint value, long count, IntPtr stream) => Check(cuMemsetD32Async(dst, value, (nuint)count, stream), "cuMemsetD32Async");

    /// <summary>Copies host to device and waits (cuMemcpyHtoD: synchronous with respect to the host).</summary>
    public static void CopyToDeviceSync(ulong dst, ReadOnlySpan<byte> src)
    {
        fixed (byte* p = src)
        {
            Check(cuMemcpyHtoD(dst, p, (nuint)src.Length), "cuMemcpyHtoD");
        }
    }

    /// <summary>Copies device to host and waits (cuMemcpyDtoH).</summary>
    public static void CopyToHostSync(Span<byte> dst, ulong src)
    {
        fixed (byte* p = dst)
        {
            Check(cuMemcpyDtoH(p, src, (nuint)dst.Length), "cuMemcpyDtoH");
        }
    }

    /// <summary>The base and size of the allocation <paramref name="pointer"/> lies in (cuMemGetAddressRange).</summary>
    public static (ulong Base, long Bytes) AddressRange(ulong pointer)
    {
        Check(cuMemGetAddressRange(out var b, out var size, pointer), "cuMemGetAddressRange");
        return (b, (long)size);
    }

    /// <summary>The cudaIpcMemHandle_t (64 bytes) of an allocation, for another process to open.</summary>
    public static byte[] IpcHandle(ulong pointer)
    {
        IpcMemHandle handle;
        Check(cuIpcGetMemHandle(&handle, pointer), "cuIpcGetMemHandle");
        return new ReadOnlySpan<byte>(&handle, IpcMemHandle.Size).ToArray();
    }

    /// <summary>
    /// Opens another process's allocation from its 64-byte handle in the current context (peer access enabled lazily
    /// where the allocation lives on another device). The same process cannot open its own handle (the driver refuses).
    /// </summary>
    public static IpcMapping OpenIpcHandle(ReadOnlySpan<byte> raw)
    {
        if (raw.Length != IpcMemHandle.Size)
        {
            throw new ArgumentException($"A CUDA IPC handle has {IpcMemHandle.Size} bytes, not {raw.Length}", nameof(raw));
        }

        IpcMemHandle handle;
        raw.CopyTo(new Span<byte>(&handle, IpcMemHandle.Size));
        Check(cuIpcOpenMemHandle(out var pointer, handle, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), "cuIpcOpenMemHandle");
        var mapping = new IpcMapping();
        mapping.Set((IntPtr)(long)pointer);
        return mapping;
    }

    public static CudaStream CreateStream()
    {
        Check(cuStreamCreate(out var s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        var h = new CudaStream();
        h.Set(s);
        return h;
    }

    public static void Synchronize(CudaStream stream) => Check(cuStreamSynchronize(stream.Handle), "cuStreamSynchronize");

    public static CudaEvent CreateEvent(bool timing = true)
    {
        Check(cuEventCreate(out var e, timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        var h = new CudaEvent();
        h.Set(e);
        return h;
    }

    public static void Record(CudaEvent evt, CudaStream stream) => Check(cuEventRecord(evt.Handle, stream.Handle), "cuEventRecord");

    /// <summary>Makes <paramref name="stream"/>'s later work wait for <paramref name="evt"/>'s latest record (in a graph capture: a dependency edge).</summary>
    public static void Wait(CudaStream stream, CudaEvent evt) => Check(cuStreamWaitEvent(stream.Handle, evt.Handle, 0), "cuStreamWaitEvent");

    /// <summary>Waits until the work before the event's last record has completed (that stream's later work not included).</summary>
    public static void Synchronize(CudaEvent evt) => Check(cuEventSynchronize(evt.Handle), "cuEventSynchronize");

    public static double ElapsedSeconds(CudaEvent start, CudaEvent end)
    {
        Check(cuEventSynchronize(end.Handle), "cuEventSynchronize");
        Check(cuEventElapsedTime(out var ms, start.Handle, end.Handle), "cuEventElapsedTime");
        return ms / 1000.0;
    }

    public static CudaModule LoadModule(byte[] image)
    {
        IntPtr m;
        fixed (byte* p = image)
        {
            Check(cuModuleLoadData(out m, p), "cuModuleLoadData");
        }

        var h = new CudaModule();
        h.Set(m);
        return h;
    }

    public static IntPtr GetFunction(CudaModule module, string name)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* p = bytes)
        {
            Check(cuModuleGetFunction(out var f, module.Handle, p), $"cuModuleGetFunction({name})");
            return f;
        }
    }

    /// <summary>An attribute of a loaded kernel (CU_FUNC_ATTRIBUTE_*: its registers per thread, its local memory).</summary>
    public static int FunctionAttribute(IntPtr function, int attribute)
    {
        Check(cuFuncGetAttribute(out var v, attribute, function), "cuFuncGetAttribute");
        return v;
    }

    /// <summary>
    /// Lets <paramref name="function"/> launch with up to <paramref name="bytes"/> of dynamic shared memory a block (more
    /// than the 48 KB every kernel may have needs this once per loaded function, up to the device's opt-in limit).
    /// </summary>
    public static void AllowDynamicSharedBytes(IntPtr function, int bytes) =>
        Check(cuFuncSetAttribute(function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes), $"cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, {bytes})");

    /// <summary>The share of the SM's unified L1 / shared memory (percent, 0-100) <paramref name="function"/> prefers as shared memory: a hint the driver follows where the kernel's blocks fit.</summary>
    public static void PreferSharedCarveout(IntPtr function, int percent) =>
        Check(cuFuncSetAttribute(function, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, percent), $"cuFuncSetAttribute(PREFERRED_SHARED_MEMORY_CARVEOUT, {percent})");

    /// <summary>Lets a kernel run in thread-block clusters of more than 8 blocks (sm_90 takes 16 where the kernel's resources allow).</summary>
    public static void AllowNonPortableClusters(IntPtr function) =>
        Check(cuFuncSetAttribute(function, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1), "cuFuncSetAttribute(NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1)");

    /// <summary>
    /// Records what <paramref name="enqueue"/> puts on the stream into a CUDA graph and instantiates it. Capture is
    /// thread-local, so other threads' CUDA calls go on meanwhile.
    /// </summary>
    public static CudaGraphExec Capture(CudaStream stream, Action enqueue, Planning.L2Window? window = null)
    {
        Check(cuStreamBeginCapture(stream.Handle, 1), "cuStreamBeginCapture");
        IntPtr graph;
        try
        {
            enqueue();
        }
        finally
        {
            // End the capture whatever happened, so the stream is usable again.
            var end = cuStreamEndCapture(stream.Handle, out graph);
            if (end != 0 && graph != IntPtr.Zero)
            {
                cuGraphDestroy(graph);
            }

            Check(end, "cuStreamEndCapture");
        }

        try
        {
            if (window is not null)
            {
                SetAccessPolicyWindow(graph, window);
            }

            Check(cuGraphInstantiateWithFlags(out var exec, graph, 0), "cuGraphInstantiateWithFlags");
            var h = new CudaGraphExec();
            h.Set(exec);
            return h;
        }
        finally
        {
            cuGraphDestroy(graph);
        }
    }

    /// <summary>Gives every kernel node of <paramref name="graph"/> <paramref name="window"/> as its access-policy window (persisting hits, normal misses).</summary>
    private static void SetAccessPolicyWindow(IntPtr graph, Planning.L2Window window)
    {
        nuint count = 0;
        Check(cuGraphGetNodes(graph, null, &count), "cuGraphGetNodes");
        var nodes = new IntPtr[(int)count];
        fixed (IntPtr* p = nodes)
        {
            Check(cuGraphGetNodes(graph, p, &count), "cuGraphGetNodes");
        }

        // CUkernelNodeAttrValue: a union of 64 bytes whose access-policy window is base, bytes, hit ratio, hit and miss properties.
        var value = stackalloc byte[64];
        new Span<byte>(value, 64).Clear();
        *(ulong*)value = window.Base;
        *(ulong*)(value + 8) = (ulong)window.Bytes;
        *(float*)(value + 16) = window.HitRatio;
        *(int*)(value + 20) = CU_ACCESS_PROPERTY_PERSISTING;
        *(int*)(value + 24) = CU_ACCESS_PROPERTY_NORMAL;
        foreach (var node in nodes.AsSpan(0, (int)count))
        {
            Check(cuGraphNodeGetType(node, out var type), "cuGraphNodeGetType");
            if (type == CU_GRAPH_NODE_TYPE_KERNEL)
            {
                Check(cuGraphKernelNodeSetAttribute(node, CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW, value), "cuGraphKernelNodeSetAttribute(ACCESS_POLICY_WINDOW)");
            }
        }
    }

    /// <summary>
    /// Sets aside up to <paramref name="bytes"/> of the current context's L2 for persisting lines, at most the device's
    /// largest set-aside; returns the set-aside and the device's largest access-policy window.
    /// </summary>
    public static (long SetAside, long MaxWindow) SetAsideL2(long bytes)
    {
        Check(cuCtxGetDevice(out var device), "cuCtxGetDevice");
        var most = Attribute(device, CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE);
        var maxWindow = Attribute(device, CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE);
        Check(cuCtxSetLimit(CU_LIMIT_PERSISTING_L2_CACHE_SIZE, (nuint)Math.Min(bytes, most)), "cuCtxSetLimit(PERSISTING_L2_CACHE_SIZE)");
        Check(cuCtxGetLimit(out var set, CU_LIMIT_PERSISTING_L2_CACHE_SIZE), "cuCtxGetLimit(PERSISTING_L2_CACHE_SIZE)");
        return ((long)set, maxWindow);
    }

    /// <summary>Bytes of a TMA tensor map (CUtensorMap: 128, 64-byte aligned where a kernel reads it).</summary>
    public const int TensorMapBytes = 128;

    /// <summary>
    /// Writes the tensor map (cuTensorMapEncodeTiled, sm_90) of a row-major fp16 matrix at <paramref name="address"/>
    /// (<paramref name="rows"/> x <paramref name="columns"/>, rows <paramref name="rowPitchBytes"/> apart) that a kernel
    /// copies <paramref name="boxRows"/> x <paramref name="boxColumns"/> boxes of into shared memory by
    /// <c>cp.async.bulk.tensor</c>, in the 128-byte swizzle (a box row of 128 bytes), elements past the matrix read as
    /// zeros, to <paramref name="map"/> (<see cref="TensorMapBytes"/>).
    /// </summary>
    public static void EncodeHalfTensorMap(void* map, ulong address, long rows, long columns, long rowPitchBytes, int boxRows, int boxColumns)
    {
        const int Float16 = 6, InterleaveNone = 0, Swizzle128 = 3, L2Promotion256 = 3, FillZeros = 0;
        var dims = stackalloc ulong[] { (ulong)columns, (ulong)rows };
        var strides = stackalloc ulong[] { (ulong)rowPitchBytes };
        var box = stackalloc uint[] { (uint)boxColumns, (uint)boxRows };
        var steps = stackalloc uint[] { 1, 1 };
        Check(cuTensorMapEncodeTiled(map, Float16, 2, address, dims, strides, box, steps, InterleaveNone, Swizzle128, L2Promotion256, FillZeros), FormattableString.Invariant($"cuTensorMapEncodeTiled(fp16 {rows} x {columns}, pitch {rowPitchBytes} B, box {boxRows} x {boxColumns}, 128-byte swizzle)"));
    }

    public static void Launch(CudaGraphExec graph, CudaStream stream) => Check(cuGraphLaunch(graph.Handle, stream.Handle), "cuGraphLaunch");

    /// <summary>
    /// Launches a one-dimensional grid. With <paramref name="programmatic"/>, through cuLaunchKernelEx with programmatic
    /// dependent launch (sm_90): the kernel may be scheduled before the kernel before it on the stream has finished, once
    /// that kernel's blocks have all run <c>griddepcontrol.launch_dependents</c> (or ended), and waits for it with
    /// <c>griddepcontrol.wait</c> before it reads anything (every generated kernel begins so: <c>bw_pdl_enter</c>). Only
    /// for kernels that wait so; a library's kernel before it that never signals is waited for as without the attribute.
    /// </summary>
    public static void Launch(IntPtr function, uint gridX, uint blockX, uint sharedBytes, IntPtr stream, void** args, string name, bool programmatic = false)
    {
        if (!programmatic)
        {
            Check(cuLaunchKernel(function, gridX, 1, 1, blockX, 1, 1, sharedBytes, stream, args, null), $"cuLaunchKernel({name})");
            return;
        }

        var attribute = default(LaunchAttribute);
        attribute.Id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        *(int*)attribute.Value = 1;
        var config = new LaunchConfig
        {
            GridX = gridX,
            GridY = 1,
            GridZ = 1,
            BlockX = blockX,
            BlockY = 1,
            BlockZ = 1,
            SharedBytes = sharedBytes,
            Stream = stream,
            Attributes = &attribute,
            AttributeCount = 1,
        };
        Check(cuLaunchKernelEx(&config, function, args, null), $"cuLaunchKernelEx({name}, programmatic)");
    }
}

/// <summary>CUlaunchAttribute: the attribute's id (an enum, padded to 8 bytes) and its value (a union of 64 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LaunchAttribute
{
    public int Id;
    public int Padding;
    public fixed byte Value[64];
}

/// <summary>CUlaunchConfig: the grid, the block, the dynamic shared memory, the stream and the attributes of a cuLaunchKernelEx.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LaunchConfig
{
    public uint GridX;
    public uint GridY;
    public uint GridZ;
    public uint BlockX;
    public uint BlockY;
    public uint BlockZ;
    public uint SharedBytes;
    public IntPtr Stream;
    public LaunchAttribute* Attributes;
    public uint AttributeCount;
}

/// <summary>A failed call into an NVIDIA library: the library, the call and the library's own error text.</summary>
public sealed class CudaException : BatchwiseException
{
    /// <summary>Creates the exception.</summary>
    public CudaException(string library, string call, int status, string text)
        : base($"{library} call {call} failed with {text}", "Run with --verbose for the stack; check the driver and library versions with `batchwise devices`.")
    {
        Library = library;
        Call = call;
        Status = status;
    }

    /// <summary>The library (CUDA driver, cuDNN, cuBLASLt, NVRTC, NVML).</summary>
    public string Library { get; }

    /// <summary>The function that failed.</summary>
    public string Call { get; }

    /// <summary>The library's status code.</summary>
    public int Status { get; }
}

/// <summary>A device allocation (cuMemAlloc); the handle value is the device pointer.</summary>
internal sealed class DeviceMemory : SafeHandle
{
    public DeviceMemory()
        : base(IntPtr.Zero, true)
    {
    }

    public ulong Pointer => (ulong)handle;

    public long Bytes { get; private set; }

    public override bool IsInvalid => handle == IntPtr.Zero;

    internal void Set(ulong pointer, long bytes)
    {
        SetHandle((IntPtr)(long)pointer);
        Bytes = bytes;
    }

    protected override bool ReleaseHandle() => CudaDriver.cuMemFree((ulong)handle) == 0;
}

/// <summary>Page-locked host memory (cuMemHostAlloc) for asynchronous copies.</summary>
internal sealed class PinnedHostMemory : SafeHandle
{
    public PinnedHostMemory(long bytes)
        : base(IntPtr.Zero, true)
    {
        Bytes = bytes;
    }

    public long Bytes { get; }

    public override bool IsInvalid => handle == IntPtr.Zero;

    public unsafe Span<byte> Span => new((void*)handle, checked((int)Bytes));

    internal void Set(IntPtr p) => SetHandle(p);

    protected override bool ReleaseHandle() => CudaDriver.cuMemFreeHost(handle) == 0;
}

/// <summary>CUipcMemHandle: 64 opaque bytes, passed by value.</summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
internal unsafe struct IpcMemHandle
{
    public const int Size = 64;

    private fixed byte _reserved[Size];
}

/// <summary>Another process's allocation opened in this one (cuIpcOpenMemHandle); the handle value is the device pointer, closed with cuIpcCloseMemHandle.</summary>
internal sealed class IpcMapping : NativeHandle
{
    public ulong Pointer => (ulong)handle;

    protected override bool ReleaseHandle() => CudaDriver.cuIpcCloseMemHandle((ulong)handle) == 0;
}

/// <summary>A CUDA stream.</summary>
internal sealed class CudaStream : NativeHandle
{
    protected override bool ReleaseHandle() => CudaDriver.cuStreamDestroy(handle) == 0;
}

/// <summary>A CUDA event (timing enabled unless asked otherwise).</summary>
internal sealed class CudaEvent : NativeHandle
{
    protected override bool ReleaseHandle() => CudaDriver.cuEventDestroy(handle) == 0;
}

/// <summary>An instantiated CUDA graph.</summary>
internal sealed class CudaGraphExec : NativeHandle
{
    protected override bool ReleaseHandle() => CudaDriver.cuGraphExecDestroy(handle) == 0;
}

/// <summary>A loaded CUDA module (a CUBIN from NVRTC).</summary>
internal sealed class CudaModule : NativeHandle
{
    protected override bool ReleaseHandle() => CudaDriver.cuModuleUnload(handle) == 0;
}

/// <summary>A retained primary context of one device; released on dispose.</summary>
internal sealed class PrimaryContext : SafeHandle
{
    public PrimaryContext(int device)
        : base(IntPtr.Zero, true)
    {
        Device = device;
        SetHandle(CudaDriver.RetainPrimaryContext(device));
    }

    public int Device { get; }

    public IntPtr Handle => handle;

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Makes the context current on the calling thread (each thread that calls CUDA must).</summary>
    public void MakeCurrent() => CudaDriver.SetCurrent(handle);

    protected override bool ReleaseHandle() => CudaDriver.cuDevicePrimaryCtxRelease(Device) == 0;
}

/// <summary>
/// A host range page-locked for the GPU with cuMemHostRegister (a client's system shared memory region): it holds the
/// device's primary context so that the unregister, when the region is let go, runs in a live context.
/// </summary>
internal sealed class RegisteredHostMemory : SafeHandle
{
    private readonly PrimaryContext _context;

    private RegisteredHostMemory(IntPtr pointer, PrimaryContext context)
        : base(IntPtr.Zero, true)
    {
        _context = context;
        SetHandle(pointer);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Registers [pointer, pointer + bytes) on <paramref name="device"/>; null with the driver's reason when it refuses.</summary>
    public static RegisteredHostMemory? TryRegister(int device, IntPtr pointer, long bytes, out string? failure)
    {
        var context = new PrimaryContext(device);
        context.MakeCurrent();
        var status = CudaDriver.TryHostRegister(pointer, bytes, CudaDriver.CU_MEMHOSTREGISTER_PORTABLE);
        if (status != 0)
        {
            failure = $"cuMemHostRegister of {bytes} bytes failed: {CudaDriver.Describe(status)}";
            context.Dispose();
            return null;
        }

        failure = null;
        return new RegisteredHostMemory(pointer, context);
    }

    protected override bool ReleaseHandle()
    {
        _context.MakeCurrent();
        var ok = CudaDriver.cuMemHostUnregister(handle) == 0;
        _context.Dispose();
        return ok;
    }
}
