using System.Globalization;
using Batchwise.Cuda.Analysis;
using Batchwise.Engines;

namespace Batchwise.Cuda.Tests.Gpu;

/// <summary>The cuBLASLt / copy / launch probe on a real GPU: plausible, ordered ceilings, written to the report folder.</summary>
[Trait("Category", "GPU")]
public sealed class CeilingsGpuTests
{
    [Fact]
    public void Probe_measures_gemm_rates_bandwidth_and_launch_costs()
    {
        Gpu.Require();
        var probe = new GpuCeilingsProbe
        {
            PeakGemmSize = 4096,
            CurveN = [256, 4096, 65536],
            BandwidthBytes = 256L << 20,
            SecondsPerMeasurement = 0.05,
            GemmOutputs = [64, 1024],
            GemmReductions = [64, 1024],
            ConvOutputs = [64, 256],
            ConvInputs = [64],
            TableN = [196, 3136, 50176],
            GemmExtraN = [1568],
            GroupWidths = [8, 24, 32],
            DepthwiseWindows = [3, 5],
            GroupedBatches = [1, 64],
            GroupedExtraSides = [14],
            SustainedN = [256, 4096],
            HoldSeconds = 0.3,
            ConvExtraSides = [14],
            ConvSideBatches = [1, 16],
            PointwiseAndStridedSides = [14],
            PointwiseInputs = [64, 256],
        };
        var c = probe.Measure(new CudaEngine(), new EngineOptions());
        Gpu.Report("ceilings.md", c.Summary());
        Gpu.Report("ceilings.md", string.Join("; ", c.Details.Select(d => d.Key + "=" + d.Value)));

        // Any GPU the engine supports does more than 1 TFLOP/s in fp32 and far more than 50 GB/s between its own buffers.
        Assert.True(c.PeakFlops > 1e12, $"fp32 {c.PeakFlops:E2}");
        Assert.True(c.PeakFlopsTf32 >= 0.9 * c.PeakFlops, $"tf32 {c.PeakFlopsTf32:E2} vs fp32 {c.PeakFlops:E2}");
        Assert.True(c.PeakFlopsFp16 > c.PeakFlops, $"fp16 {c.PeakFlopsFp16:E2} vs fp32 {c.PeakFlops:E2}");
        Assert.True(c.BandwidthBytesPerSecond > 50e9, $"bandwidth {c.BandwidthBytesPerSecond:E2}");
        if (double.TryParse(c.Details["nominal_bandwidth_gb_s"], NumberStyles.Float, CultureInfo.InvariantCulture, out var nominal))
        {
            Assert.True(c.BandwidthBytesPerSecond < 1.1 * nominal * 1e9, $"a copy cannot beat the memory's nominal rate: {c.BandwidthBytesPerSecond:E2} vs {nominal} GB/s");
        }

        // Launch costs: microseconds, a CUDA-graph node no dearer than a launch from the host.
        Assert.InRange(c.KernelLaunchSeconds!.Value, 1e-8, 1e-4);
        Assert.InRange(c.OpOverheadSeconds, 0, c.KernelLaunchSeconds.Value * 1.5);
        Assert.InRange(c.RunOverheadSeconds, 0, 1e-3);
        Assert.Equal("cuda graph", c.Launch);

        // The rate curve rises with N and each precision has one.
        foreach (var precision in new[] { "fp32", "tf32", "fp16", "int8" })
        {
            var curve = c.RateCurves[precision];
            Assert.Equal([256.0, 4096, 65536], curve.Select(p => p.N));
            Assert.True(curve[^1].Flops > curve[0].Flops, $"{precision}: {string.Join(", ", curve)}");
        }

        Assert.InRange(c.SaturationN, 256, 1e6);

        // Held GEMMs: fp32, tf32 and fp16 (not int8), two curve sizes and the peak square, each busier than the one before
        // and keeping between a third of its burst rate and all of it (a burst is the hold's fastest window).
        Assert.Equal(["fp16", "fp32", "tf32"], c.SustainedLoad.Keys.Order());
        foreach (var (precision, held) in c.SustainedLoad)
        {
            Gpu.Report("ceilings.md", $"{precision} held: " + string.Join(" ", held.Select(p => FormattableString.Invariant($"{p.Activity:F2}:{p.RateFactor:F3}"))));
            Assert.Equal(3, held.Count);
            Assert.True(held[0].Activity < held[1].Activity, $"{precision}: {string.Join(", ", held)}");
            Assert.All(held, p => Assert.InRange(p.Activity, 1e-4, 1.0));
            Assert.All(held, p => Assert.InRange(p.RateFactor, 0.33, 1.0));
        }

        // Per-layer rate tables: every precision and class measured, each node's rate rising with N (a small call is
        // timed on the GPU inside a CUDA graph, not as the host's cost per call), none past the precision's peak.
        Assert.False(c.Details.ContainsKey("layer_rates_missing"), c.Details.GetValueOrDefault("layer_rates_missing"));
        Assert.InRange(c.KernelFloorSeconds!.Value, 1e-8, 1e-4);
        foreach (var key in from p in new[] { "fp32", "fp16" } from t in new[] { "gemm", "conv", "grouped", "grouped@14", "grouped-s2@14", "depthwise", "depthwise-s2" } select p + "/" + t)
        {
            var table = c.LayerRates[key];
            Gpu.Report("ceilings.md", key + ": " + string.Join(" ", table.Select(p => FormattableString.Invariant($"{p.Outputs}x{p.Reduction}@{p.N}:{p.Flops / 1e12:F2}"))));
            // A 3x3 convolution's rate counts the direct method's multiply-adds, and cuDNN may run it as Winograd's
            // F(2x2, 3x3), 2.25x fewer: session 38's H100 measured fp32's 64 -> 256 3x3 layer at 67.4 TFLOP/s against
            // a 51.4 TFLOP/s fp32 GEMM (with the 2,048 MB workspace default since session 36, which admits it).
            var peak = c.PeakOf(key[..4])!.Value * (key.EndsWith("/conv", StringComparison.Ordinal) ? 2.25 : 1);
            Assert.All(table, p => Assert.InRange(p.Flops, 1e9, 1.1 * peak));
            foreach (var node in table.GroupBy(p => (p.Outputs, p.Reduction)))
            {
                var byN = node.OrderBy(p => p.N).ToList();
                // A table whose points do not move with N measured nothing of the layer. 1.5x, not 2x: fp32's 5x5 stride-2
                // depthwise layer rose 1.99x from 1 image to 64 on an H200 (session 18): a kernel already at half its
                // 64-image rate with one image.
                Assert.True(byN[^1].Flops > 1.5 * byN[0].Flops, $"{key} {node.Key}: {string.Join(", ", byN)}");
            }
        }
        Assert.Equal("fp16", c.For(new EngineOptions { Precision = Precision.Fp16 }).Precision);

        // The grouped and depthwise tables in their per-group view: every width and window measured at both batches
        // (N = pixels x groups), the grouped widths at 9 x width, the depthwise windows with one output per group.
        Assert.Equal([8.0, 24, 32], c.LayerRates["fp16/grouped"].Select(p => p.Outputs).Distinct().Order());
        Assert.All(c.LayerRates["fp16/grouped"], p => Assert.Equal(9 * p.Outputs, p.Reduction));
        Assert.Equal([9.0, 25], c.LayerRates["fp32/depthwise-s2"].Select(p => p.Reduction).Distinct().Order());
        Assert.All(c.LayerRates["fp16/depthwise"], p => Assert.Equal(1, p.Outputs));
        Assert.Contains(c.LayerRates["fp16/depthwise"], p => p.N == 144.0 * 28 * 28 * 64);

        // The grouped tables at a further side: the same widths, N over that side's positions (384 channels: 384 / width groups).
        Assert.Equal([8.0, 24, 32], c.LayerRates["fp32/grouped@14"].Select(p => p.Outputs).Distinct().Order());
        Assert.Contains(c.LayerRates["fp32/grouped@14"], p => p.Outputs == 24 && p.N == 14.0 * 14 * 64 * (384 / 24));
        Assert.False(c.LayerRates.ContainsKey("fp32/grouped@7"));

        // The fp32 convolution table at a further side: its nodes at the probe's input channels (64 here), N at 1 and 16 images of 14x14,
        // each rate rising with the images; fp16 measures the 56x56 table only.
        var conv14 = c.LayerRates["fp32/conv@14"];
        Assert.Equal([14.0 * 14, 16 * 14 * 14], conv14.Select(p => p.N).Distinct().Order());
        Assert.Equal([9.0 * 64], conv14.Select(p => p.Reduction).Distinct());
        Assert.All(conv14.GroupBy(p => p.Outputs), node => Assert.True(node.MaxBy(p => p.N)!.Flops > node.MinBy(p => p.N)!.Flops, string.Join(", ", node)));
        Assert.False(c.LayerRates.ContainsKey("fp16/conv@14"));

        // The GEMM tables take the further N between the others; the convolution tables do not.
        Assert.Contains(c.LayerRates["fp32/gemm"], p => p.N == 1568);
        Assert.Contains(c.LayerRates["fp16/gemm-cold"], p => p.N == 1568);
        Assert.DoesNotContain(c.LayerRates["fp32/conv"], p => p.N == 1568);

        // The fp32 1x1 and stride-2 3x3 tables at that side (K = input channels; 9 x them), none at 56x56 here nor in fp16;
        // a stride-2 3x3 reads four times the input of a stride-1 one for the same outputs, and Winograd does not take it:
        // its rate stays under the stride-1 table's at the same node.
        var pointwise = c.LayerRates["fp32/pointwise@14"];
        Assert.Equal([64.0, 256], pointwise.Select(p => p.Reduction).Distinct().Order());
        Assert.Equal([14.0 * 14, 16 * 14 * 14], pointwise.Select(p => p.N).Distinct().Order());
        var strided = c.LayerRates["fp32/conv-s2@14"];
        Assert.Equal([9.0 * 64], strided.Select(p => p.Reduction).Distinct());
        Assert.All(strided, p => Assert.True(p.Flops < 1.2 * conv14.Single(q => q.Outputs == p.Outputs && q.N == p.N).Flops, $"{p} vs the stride-1 table"));
        Assert.False(c.LayerRates.ContainsKey("fp32/pointwise") || c.LayerRates.ContainsKey("fp16/pointwise@14") || c.LayerRates.ContainsKey("fp16/conv-s2@14"));
    }

    [Fact]
    public void Probe_measures_the_cublaslt_int8_gemm_and_explain_predicts_int8_layers_with_it()
    {
        Gpu.Require();
        var probe = new GpuCeilingsProbe { PeakGemmSize = 8192, CurveN = [256, 4096, 65536], BandwidthBytes = 64L << 20, SecondsPerMeasurement = 0.05 };
        var c = probe.Measure(new CudaEngine(), new EngineOptions());
        Gpu.Report("ceilings.md", string.Create(CultureInfo.InvariantCulture, $"int8 {c.PeakFlopsInt8 / 1e12:N1} TOP/s vs fp16 {c.PeakFlopsFp16 / 1e12:N1} TFLOP/s ({c.PeakFlopsInt8 / c.PeakFlopsFp16:N2}x); int8 curve {c.Details.GetValueOrDefault("int8_curve", c.Details.GetValueOrDefault("int8", "-"))}"));

        // Tensor cores since Turing do int8 at twice their fp16 rate; cuBLASLt's int8 x int8 -> int32 GEMM at 8192 beats fp16.
        Assert.True(c.PeakFlopsInt8 > c.PeakFlopsFp16, $"int8 {c.PeakFlopsInt8:E2} vs fp16 {c.PeakFlopsFp16:E2}; {c.Details.GetValueOrDefault("int8", string.Empty)}");
        var int8Run = c.For(new EngineOptions { Precision = Precision.Int8 });
        Assert.Equal("fp16", int8Run.Precision);
        Assert.Equal(c.PeakFlopsInt8!.Value, int8Run.PeakFor("Conv", "int8"));
    }

    [Fact]
    public void Probe_without_a_gpu_fails_with_the_no_gpu_error()
    {
        try
        {
            Batchwise.Cuda.Interop.CudaDriver.Initialize();
            Assert.Skip("a GPU is present: the probe runs in Probe_measures_gemm_rates_bandwidth_and_launch_costs");
        }
        catch (BatchwiseException)
        {
        }

        var e = Assert.ThrowsAny<BatchwiseException>(() => new GpuCeilingsProbe().Measure(new CudaEngine(), new EngineOptions()));
        Assert.StartsWith("no NVIDIA GPU found", e.Message, StringComparison.Ordinal);
    }
}
