namespace Batchwise.Engines;

/// <summary>One GPU's telemetry at one moment (what Triton's nv_gpu_* metrics report).</summary>
/// <param name="Uuid">The device's UUID (GPU-...), the label Triton's metrics use.</param>
/// <param name="Name">The device's name.</param>
/// <param name="Utilization">The fraction of the last sample period a kernel ran (0..1).</param>
/// <param name="MemoryUsedBytes">Device memory in use.</param>
/// <param name="MemoryTotalBytes">Device memory in all.</param>
/// <param name="PowerWatts">Power draw, where the device reports it.</param>
/// <param name="PowerLimitWatts">The enforced power limit, where the device reports it.</param>
public sealed record GpuSample(string Uuid, string Name, double Utilization, long MemoryUsedBytes, long MemoryTotalBytes, double? PowerWatts, double? PowerLimitWatts);

/// <summary>Reads every GPU's utilisation, memory and power (the CUDA project implements it with NVML).</summary>
public interface IGpuTelemetry
{
    /// <summary>One sample per GPU.</summary>
    IReadOnlyList<GpuSample> Sample();
}

/// <summary>Where the server finds GPU telemetry: the host registers a source (the CLI registers NVML's), none means no GPU metrics.</summary>
public static class GpuTelemetry
{
    private static Func<IGpuTelemetry?>? _source;

    /// <summary>Registers the telemetry source; it returns null where no GPU or driver answers.</summary>
    public static void Register(Func<IGpuTelemetry?> source) => Volatile.Write(ref _source, source);

    /// <summary>The registered telemetry, or null when none is registered or no GPU answers.</summary>
    public static IGpuTelemetry? TryCreate()
    {
        try
        {
            return Volatile.Read(ref _source)?.Invoke();
        }
        catch (BatchwiseException)
        {
            return null;
        }
    }
}
