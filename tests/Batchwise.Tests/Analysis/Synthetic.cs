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

    /// <summary>
    /// A GPU with round numbers: 50 / 350 / 700 TFLOP/s fp32 / TF32 / fp16, 2 TB/s; 1 µs a graph node and 5 µs a graph
    /// run, 4 µs a kernel and 12 µs a run without graphs; rate curves (N, FLOP/s) that reach the peak at N = 4,096
    /// (fp32), 8,192 (tf32) and 16,384 (fp16), rising in proportion to N below it.
    /// </summary>
    public static DeviceCeilings Gpu() => new()
    {
        Engine = "cuda",
        Device = "synthetic GPU",
        Machine = "test-machine",
        PeakFlops = 50e12,
        PeakFlopsTf32 = 350e12,
        PeakFlopsFp16 = 700e12,
        RateCurves = new Dictionary<string, IReadOnlyList<RatePoint>>
        {
            ["fp32"] = Curve(50e12, 4096),
            ["tf32"] = Curve(350e12, 8192),
            ["fp16"] = Curve(700e12, 16384),
        },
        BandwidthBytesPerSecond = 2e12,
        RunOverheadSeconds = 5e-6,
        OpOverheadSeconds = 1e-6,
        KernelLaunchSeconds = 4e-6,
        StreamRunOverheadSeconds = 12e-6,
        Launch = "cuda graph",
        SaturationN = 4096,
        SaturationSource = "synthetic",
        ComputeUnits = 132,
        MeasuredAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
    };

    /// <summary><see cref="Gpu"/> with an int8 ceiling: 1,400 TOP/s (twice fp16), a curve that reaches it at N = 32,768.</summary>
    public static DeviceCeilings Int8Gpu()
    {
        var gpu = Gpu();
        return gpu with { PeakFlopsInt8 = 1400e12, RateCurves = new Dictionary<string, IReadOnlyList<RatePoint>>(gpu.RateCurves) { ["int8"] = Curve(1400e12, 32768) } };
    }

    /// <summary>One layer of a quantized model: name, op, FLOPs, activation and weight bytes (as int8 moves them), GEMM shape, role.</summary>
    public static (LayerWork AtBatchOne, double WeightBytes) Layer(string name, string op, double flops, double activationBytes, double weightBytes, GemmShape? gemm, QuantizedRole role)
    {
        var (work, weights) = ModelWork.Layer(name, op, flops, activationBytes, weightBytes, gemm);
        return (work with { Role = role }, weights);
    }

    /// <summary>Rate by N for N = 256 … 65,536 (x4 apart): peak x min(1, N / <paramref name="saturationN"/>).</summary>
    public static IReadOnlyList<RatePoint> Curve(double peak, double saturationN) =>
        new[] { 256.0, 1024, 4096, 16384, 65536 }.Select(n => new RatePoint(n, peak * Math.Min(1, n / saturationN))).ToList();

    /// <summary>A model of one GEMM whose N per sample is <paramref name="nPerSample"/>: 1 GFLOP and 1 MB of activations per sample, 1 MB of weights.</summary>
    public static ModelWork OneGemm(long nPerSample, double flopsPerSample = 1e9, double activationBytes = 1e6, double weightBytes = 1e6) =>
        ModelWork.FromLayers("one-gemm", "x [1, 8]", [ModelWork.Layer("conv", "Conv", flopsPerSample, activationBytes, weightBytes, new GemmShape(64, nPerSample, 64))]);
}
