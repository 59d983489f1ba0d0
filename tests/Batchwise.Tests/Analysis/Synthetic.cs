using Batchwise.Analysis;

namespace Batchwise.Tests.Analysis;

/// <summary>Made-up devices and layers with round numbers, so expected times can be worked out by hand.</summary>
internal static class Synthetic
{
    /// <summary>100 GFLOP/s, 10 GB/s (ridge at 10 FLOP/byte), 10 µs per run, 1 µs per op, saturates at N = 1,000.</summary>
    public static DeviceCeilings Device(double saturationN = 1000, double opOverhead = 1e-6, double runOverhead = 10e-6) => new()
    {
        Engine = "test",
        Device = "synthetic device",
        Machine = "test-machine",
        PeakFlops = 100e9,
        BandwidthBytesPerSecond = 10e9,
        RunOverheadSeconds = runOverhead,
        OpOverheadSeconds = opOverhead,
        SaturationN = saturationN,
        SaturationSource = "synthetic",
        ComputeUnits = 4,
        MeasuredAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
    };

    /// <summary>A model of one GEMM whose N per sample is <paramref name="nPerSample"/>: 1 GFLOP and 1 MB of activations per sample, 1 MB of weights.</summary>
    public static ModelWork OneGemm(long nPerSample, double flopsPerSample = 1e9, double activationBytes = 1e6, double weightBytes = 1e6) =>
        ModelWork.FromLayers("one-gemm", "x [1, 8]", [ModelWork.Layer("conv", "Conv", flopsPerSample, activationBytes, weightBytes, new GemmShape(64, nPerSample, 64))]);
}
