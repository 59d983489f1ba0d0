using Batchwise.Cuda.Interop;

namespace Batchwise.Cuda;

/// <summary>One NVIDIA GPU as `batchwise devices` shows it.</summary>
/// <param name="Ordinal">CUDA device ordinal.</param>
/// <param name="Name">Product name.</param>
/// <param name="MemoryBytes">Device memory.</param>
/// <param name="MultiprocessorCount">Streaming multiprocessors.</param>
/// <param name="ComputeCapability">e.g. 9.0.</param>
/// <param name="PciBusId">PCI bus id.</param>
/// <param name="DriverVersion">Driver version (NVML's, else the CUDA driver API version).</param>
/// <param name="CudaDriverApi">CUDA version the driver supports.</param>
/// <param name="CudnnVersion">cuDNN version, or why it is missing.</param>
/// <param name="CublasLtVersion">cuBLASLt version, or why it is missing.</param>
/// <param name="NvrtcVersion">NVRTC version, or why it is missing.</param>
public sealed record CudaDeviceInfo(int Ordinal, string Name, long MemoryBytes, int MultiprocessorCount, string ComputeCapability, string PciBusId, string DriverVersion, string CudaDriverApi, string CudnnVersion, string CublasLtVersion, string NvrtcVersion);

/// <summary>Lists the machine's NVIDIA GPUs and the libraries the engine would use.</summary>
public static class CudaDevices
{
    /// <summary>Every GPU; throws a BatchwiseException starting "no NVIDIA GPU found" where there is none.</summary>
    public static IReadOnlyList<CudaDeviceInfo> List()
    {
        CudaDriver.Initialize();
        var api = CudaDriver.DriverVersion();
        var apiText = $"{api / 1000}.{api % 1000 / 10}";
        string driver;
        try
        {
            driver = Nvml.DriverVersion();
        }
        catch (BatchwiseException e)
        {
            driver = $"unknown ({e.Message})";
        }

        var cudnn = Try(Cudnn.Version);
        var lt = Try(CublasLt.Version);
        var nvrtc = Try(Nvrtc.Version);
        var list = new List<CudaDeviceInfo>();
        for (var i = 0; i < CudaDriver.DeviceCount(); i++)
        {
            var d = CudaDriver.Device(i);
            var cc = $"{CudaDriver.Attribute(d, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)}.{CudaDriver.Attribute(d, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)}";
            list.Add(new CudaDeviceInfo(i, CudaDriver.DeviceName(d), CudaDriver.TotalMemory(d), CudaDriver.Attribute(d, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT), cc, CudaDriver.PciBusId(d), driver, apiText, cudnn, lt, nvrtc));
        }

        return list;
    }

    /// <summary>Where each library was loaded from (after <see cref="List"/>).</summary>
    public static IReadOnlyDictionary<string, string> LibraryPaths() => new Dictionary<string, string>
    {
        ["driver"] = NativeLibraries.PathOf(NativeLibraries.Driver) ?? "-",
        ["cudnn"] = NativeLibraries.PathOf(NativeLibraries.Cudnn) ?? "-",
        ["cublaslt"] = NativeLibraries.PathOf(NativeLibraries.CublasLt) ?? "-",
        ["nvrtc"] = NativeLibraries.PathOf(NativeLibraries.Nvrtc) ?? "-",
        ["nvml"] = NativeLibraries.PathOf(NativeLibraries.Nvml) ?? "-",
    };

    private static string Try(Func<string> version)
    {
        try
        {
            return version();
        }
        catch (BatchwiseException e)
        {
            return "missing: " + e.Message;
        }
    }
}
