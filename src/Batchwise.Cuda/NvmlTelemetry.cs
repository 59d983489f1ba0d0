using Batchwise.Cuda.Interop;
using Batchwise.Engines;

namespace Batchwise.Cuda;

/// <summary>Every GPU's utilisation, memory and power from NVML, for the server's nv_gpu_* metrics.</summary>
public sealed class NvmlTelemetry : IGpuTelemetry
{
    private readonly IntPtr[] _devices;

    private NvmlTelemetry(IntPtr[] devices) => _devices = devices;

    /// <summary>NVML's view of the GPUs, or null where NVML or a GPU is missing (no GPU metrics then).</summary>
    public static NvmlTelemetry? TryCreate()
    {
        try
        {
            var count = Nvml.DeviceCount();
            return count == 0 ? null : new NvmlTelemetry(Enumerable.Range(0, count).Select(Nvml.DeviceByIndex).ToArray());
        }
        catch (Exception e) when (e is BatchwiseException or DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<GpuSample> Sample() => _devices.Select(d =>
    {
        var memory = Nvml.MemoryOf(d);
        return new GpuSample(Nvml.UuidOf(d), Nvml.NameOf(d), Nvml.UtilizationOf(d).Gpu / 100.0, (long)memory.Used, (long)memory.Total, Nvml.PowerOf(d), Nvml.PowerLimitOf(d));
    }).ToList();
}
