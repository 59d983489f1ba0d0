using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>NVML: device utilisation, memory, names and the driver version for telemetry.</summary>
internal static unsafe partial class Nvml
{
    private const string Lib = "batchwise_nvml";
    private static int _initialized;

    [StructLayout(LayoutKind.Sequential)]
    public struct Utilization
    {
        public uint Gpu;
        public uint Memory;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Memory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    [LibraryImport(Lib, EntryPoint = "nvmlInit_v2")] private static partial int nvmlInit();
    [LibraryImport(Lib)] private static partial IntPtr nvmlErrorString(int result);
    [LibraryImport(Lib)] private static partial int nvmlSystemGetDriverVersion(byte* version, uint length);
    [LibraryImport(Lib, EntryPoint = "nvmlDeviceGetHandleByPciBusId_v2")] private static partial int nvmlDeviceGetHandleByPciBusId(byte* busId, out IntPtr device);
    [LibraryImport(Lib, EntryPoint = "nvmlDeviceGetHandleByIndex_v2")] private static partial int nvmlDeviceGetHandleByIndex(uint index, out IntPtr device);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetUtilizationRates(IntPtr device, out Utilization utilization);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetMemoryInfo(IntPtr device, out Memory memory);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetName(IntPtr device, byte* name, uint length);
    [LibraryImport(Lib, EntryPoint = "nvmlDeviceGetCount_v2")] private static partial int nvmlDeviceGetCount(out uint count);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetUUID(IntPtr device, byte* uuid, uint length);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetPowerUsage(IntPtr device, out uint milliwatts);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetEnforcedPowerLimit(IntPtr device, out uint milliwatts);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetClockInfo(IntPtr device, int type, out uint mhz);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetCurrentClocksEventReasons(IntPtr device, out ulong reasons);
    [LibraryImport(Lib)] private static partial int nvmlDeviceGetCurrentClocksThrottleReasons(IntPtr device, out ulong reasons);

    /// <summary>NVML_CLOCK_SM.</summary>
    private const int ClockSm = 1;

    /// <summary>NVML_ERROR_NOT_SUPPORTED: the device does not report the quantity asked for.</summary>
    private const int NotSupported = 3;

    public static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new CudaException("NVML", call, status, Marshal.PtrToStringUTF8(nvmlErrorString(status)) ?? "NVML_ERROR_" + status);
        }
    }

    /// <summary>Initialises NVML once (it stays initialised for the process: NVML's own reference count makes a shutdown per user pointless).</summary>
    public static void Initialize()
    {
        if (Interlocked.CompareExchange(ref _initialized, 1, 0) == 0)
        {
            try
            {
                NativeLibraries.Load(NativeLibraries.Nvml);
                Check(nvmlInit(), "nvmlInit_v2");
            }
            catch
            {
                _initialized = 0;
                throw;
            }
        }
    }

    public static string DriverVersion()
    {
        Initialize();
        var buffer = stackalloc byte[96];
        Check(nvmlSystemGetDriverVersion(buffer, 96), "nvmlSystemGetDriverVersion");
        return Marshal.PtrToStringUTF8((IntPtr)buffer) ?? "?";
    }

    /// <summary>The NVML device with a PCI bus id (as the CUDA driver reports it), or by index when the id is not found.</summary>
    public static IntPtr DeviceByPciBusId(string busId, int fallbackIndex)
    {
        Initialize();
        var bytes = System.Text.Encoding.ASCII.GetBytes(busId + "\0");
        fixed (byte* b = bytes)
        {
            if (nvmlDeviceGetHandleByPciBusId(b, out var d) == 0)
            {
                return d;
            }
        }

        Check(nvmlDeviceGetHandleByIndex((uint)fallbackIndex, out var byIndex), "nvmlDeviceGetHandleByIndex_v2");
        return byIndex;
    }

    public static Utilization UtilizationOf(IntPtr device)
    {
        Check(nvmlDeviceGetUtilizationRates(device, out var u), "nvmlDeviceGetUtilizationRates");
        return u;
    }

    public static Memory MemoryOf(IntPtr device)
    {
        Check(nvmlDeviceGetMemoryInfo(device, out var m), "nvmlDeviceGetMemoryInfo");
        return m;
    }

    /// <summary>The number of GPUs NVML sees.</summary>
    public static int DeviceCount()
    {
        Initialize();
        Check(nvmlDeviceGetCount(out var count), "nvmlDeviceGetCount_v2");
        return (int)count;
    }

    /// <summary>The NVML device at <paramref name="index"/>.</summary>
    public static IntPtr DeviceByIndex(int index)
    {
        Initialize();
        Check(nvmlDeviceGetHandleByIndex((uint)index, out var device), "nvmlDeviceGetHandleByIndex_v2");
        return device;
    }

    /// <summary>The device's UUID (GPU-...).</summary>
    public static string UuidOf(IntPtr device)
    {
        var buffer = stackalloc byte[96];
        Check(nvmlDeviceGetUUID(device, buffer, 96), "nvmlDeviceGetUUID");
        return Marshal.PtrToStringUTF8((IntPtr)buffer) ?? "?";
    }

    /// <summary>Power draw in watts, or null where the device does not report it.</summary>
    public static double? PowerOf(IntPtr device)
    {
        var status = nvmlDeviceGetPowerUsage(device, out var mw);
        if (status == NotSupported)
        {
            return null;
        }

        Check(status, "nvmlDeviceGetPowerUsage");
        return mw / 1000.0;
    }

    /// <summary>The enforced power limit in watts, or null where the device does not report it.</summary>
    public static double? PowerLimitOf(IntPtr device)
    {
        var status = nvmlDeviceGetEnforcedPowerLimit(device, out var mw);
        if (status == NotSupported)
        {
            return null;
        }

        Check(status, "nvmlDeviceGetEnforcedPowerLimit");
        return mw / 1000.0;
    }

    /// <summary>The SM clock now in MHz, or null where the device does not report it.</summary>
    public static double? SmClockOf(IntPtr device)
    {
        var status = nvmlDeviceGetClockInfo(device, ClockSm, out var mhz);
        if (status == NotSupported)
        {
            return null;
        }

        Check(status, "nvmlDeviceGetClockInfo");
        return mhz;
    }

    /// <summary>
    /// What holds the clocks below their maximum now (nvmlClocksThrottleReasons / nvmlClocksEventReasons bits: 0x4 the
    /// software power cap, 0x8 a hardware slowdown, 0x20 / 0x40 software / hardware thermal slowdown, 0x80 the power
    /// brake, ...), or null where the device or the library does not report it.
    /// </summary>
    public static ulong? ClockLimitsOf(IntPtr device)
    {
        // The name since driver 535; the older one (the same call) where a library predates it.
        int status;
        ulong reasons;
        try
        {
            status = nvmlDeviceGetCurrentClocksEventReasons(device, out reasons);
        }
        catch (EntryPointNotFoundException)
        {
            try
            {
                status = nvmlDeviceGetCurrentClocksThrottleReasons(device, out reasons);
            }
            catch (EntryPointNotFoundException)
            {
                return null;
            }
        }

        if (status == NotSupported)
        {
            return null;
        }

        Check(status, "nvmlDeviceGetCurrentClocksEventReasons");
        return reasons;
    }

    public static string NameOf(IntPtr device)
    {
        var buffer = stackalloc byte[96];
        Check(nvmlDeviceGetName(device, buffer, 96), "nvmlDeviceGetName");
        return Marshal.PtrToStringUTF8((IntPtr)buffer) ?? "?";
    }
}
