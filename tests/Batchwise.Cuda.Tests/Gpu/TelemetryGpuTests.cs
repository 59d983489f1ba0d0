namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>NVML telemetry for the server's nv_gpu_* metrics, on a real GPU.</summary>
[Trait("Category", "GPU")]
public sealed class TelemetryGpuTests
{
    [Fact]
    public void Nvml_reports_every_gpu_with_its_uuid_memory_utilization_and_power()
    {
        Gpu.Require();
        var telemetry = NvmlTelemetry.TryCreate();
        Assert.NotNull(telemetry);
        var samples = telemetry.Sample();
        Assert.NotEmpty(samples);
        foreach (var s in samples)
        {
            Gpu.Report("telemetry.md", $"{s.Uuid} {s.Name}: utilization {s.Utilization:P0}, memory {s.MemoryUsedBytes >> 20}/{s.MemoryTotalBytes >> 20} MiB, power {s.PowerWatts} W of {s.PowerLimitWatts} W");
            Assert.StartsWith("GPU-", s.Uuid, StringComparison.Ordinal);
            Assert.InRange(s.Utilization, 0, 1);
            Assert.InRange(s.MemoryUsedBytes, 1, s.MemoryTotalBytes);
            Assert.True(s.PowerWatts is null or > 0, $"power {s.PowerWatts}");
        }
    }
}
