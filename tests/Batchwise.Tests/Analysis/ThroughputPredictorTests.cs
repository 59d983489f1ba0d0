using Batchwise.Analysis;

namespace Batchwise.Tests.Analysis;

public sealed class ThroughputPredictorTests
{
    private readonly ThroughputPredictor _predictor = new(Synthetic.Device());

    [Fact]
    public void Compute_bound_layer_takes_flops_over_peak_plus_op_overhead()
    {
        // 1 GFLOP at 100 GFLOP/s = 10 ms; 1 MB at 10 GB/s = 0.1 ms.
        var p = _predictor.Predict(new LayerWork("conv", "Conv", 1e9, 1e6, new GemmShape(64, 10_000, 576), 10_000));
        Assert.Equal(Bound.Compute, p.Bound);
        Assert.Equal(0.010, p.ComputeSeconds, 9);
        Assert.Equal(0.0001, p.MemorySeconds, 9);
        Assert.Equal(0.010 + 1e-6, p.Seconds, 9);
        Assert.Equal(1.0, p.Efficiency);
    }

    [Fact]
    public void Memory_bound_layer_takes_bytes_over_bandwidth()
    {
        // 1 MFLOP = 10 µs of compute; 100 MB at 10 GB/s = 10 ms.
        var p = _predictor.Predict(new LayerWork("add", "Add", 1e6, 100e6));
        Assert.Equal(Bound.Memory, p.Bound);
        Assert.Equal(0.010 + 1e-6, p.Seconds, 9);
    }

    [Fact]
    public void Tiny_layer_is_launch_bound()
    {
        var p = new ThroughputPredictor(Synthetic.Device(opOverhead: 20e-6)).Predict(new LayerWork("relu", "Relu", 1e3, 8e3));
        Assert.Equal(Bound.Launch, p.Bound);
        Assert.Equal(20e-6 + 0.8e-6, p.Seconds, 12);
    }

    [Fact]
    public void Gemm_with_small_n_runs_at_n_over_saturation_of_peak()
    {
        var small = _predictor.Predict(new LayerWork("fc", "Gemm", 1e9, 1e3, new GemmShape(100, 64, 64), 100));
        Assert.Equal(0.1, small.Efficiency, 12);
        Assert.Equal(0.100, small.ComputeSeconds, 9);
    }

    [Fact]
    public void Throughput_grows_until_n_fills_the_device_then_stays_flat()
    {
        // N per sample 100, device full at N = 1,000: each doubling pays until b = 10, nothing after.
        var work = Synthetic.OneGemm(nPerSample: 100);
        var curve = _predictor.Predict([1, 2, 4, 8, 16, 32, 64], work.At);
        Assert.Equal(10, _predictor.SaturationBatch(100));
        Assert.True(curve[1].Throughput > 1.9 * curve[0].Throughput);
        Assert.True(curve[3].Throughput > 1.9 * curve[2].Throughput);
        Assert.True(curve[6].Throughput < 1.05 * curve[4].Throughput);
        Assert.Equal(16, Explainer.KneeOf(curve.Select(p => (p.BatchSize, p.Throughput))));
    }

    [Fact]
    public void Model_that_fills_the_device_at_batch_one_gains_almost_nothing()
    {
        var work = Synthetic.OneGemm(nPerSample: 100_000);
        var curve = _predictor.Predict([1, 64], work.At);
        Assert.InRange(curve[1].Throughput / curve[0].Throughput, 1.0, 1.05);
    }

    [Fact]
    public void Launch_bound_model_gains_nearly_linearly_from_batching()
    {
        // 1 kFLOP per sample but 1 ms of fixed cost per run: the run overhead dominates until huge batches.
        var device = Synthetic.Device(runOverhead: 1e-3);
        var work = Synthetic.OneGemm(nPerSample: 10_000, flopsPerSample: 1e3, activationBytes: 1e2, weightBytes: 1e2);
        var curve = new ThroughputPredictor(device).Predict([1, 8], work.At);
        Assert.Equal(Bound.Launch, curve[0].Layers[0].Bound);
        Assert.True(curve[0].SecondsBoundBy(Bound.Launch) / curve[0].Seconds > 0.99);
        Assert.InRange(curve[1].Throughput / curve[0].Throughput, 7.9, 8.0);
    }

    [Fact]
    public void Weights_are_read_once_per_run_while_activations_grow_with_the_batch()
    {
        var work = Synthetic.OneGemm(nPerSample: 10, activationBytes: 1e6, weightBytes: 4e6);
        Assert.Equal(5e6, work.At(1)[0].Bytes);
        Assert.Equal(12e6, work.At(8)[0].Bytes);
        Assert.Equal(80, work.At(8)[0].ParallelSize);
        Assert.Equal(new GemmShape(64, 80, 64), work.At(8)[0].Gemm);
        Assert.Equal(8e9, work.At(8)[0].Flops);
    }

    [Fact]
    public void Views_add_no_per_op_overhead()
    {
        var p = _predictor.Predict(new LayerWork("flatten", "Flatten", 0, 0, LaunchesKernel: false));
        Assert.Equal(0, p.Seconds);
    }

    [Fact]
    public void Saturation_is_where_the_curve_reaches_90_percent_of_its_best()
    {
        var (n, source) = CeilingsProbe.FitSaturation([(100, 50e9), (180, 90e9), (1000, 100e9)], 999);
        Assert.Equal(180, n, 6);
        Assert.Equal("measured (90% of the best rate)", source);
    }

    [Fact]
    public void Saturation_between_points_is_interpolated_in_log_n()
    {
        // 80% at N = 100, 100% at 400: 90% halfway in log N, at N = 200.
        var (n, _) = CeilingsProbe.FitSaturation([(100, 80e9), (400, 100e9), (1600, 100e9)], 999);
        Assert.Equal(200, n, 6);
    }

    [Fact]
    public void Saturation_fit_ignores_a_rate_that_falls_at_large_n()
    {
        // Half the best at 16, full at 64, slower again at 4096 (caches): 90% at 16 x 4^0.8.
        var (n, _) = CeilingsProbe.FitSaturation([(16, 50e9), (64, 100e9), (1024, 98e9), (4096, 30e9)], 999);
        Assert.Equal(16 * Math.Pow(4, 0.8), n, 6);
    }

    [Fact]
    public void Saturation_fit_of_a_still_rising_curve_says_it_is_a_lower_bound()
    {
        var (_, source) = CeilingsProbe.FitSaturation([(16, 10e9), (64, 40e9), (256, 100e9)], 999);
        Assert.Contains("lower bound", source, StringComparison.Ordinal);
    }

    [Fact]
    public void Saturation_fit_of_a_flat_curve_is_at_or_below_its_smallest_n()
    {
        var (n, _) = CeilingsProbe.FitSaturation([(8, 100e9), (64, 100e9)], 999);
        Assert.Equal(8 * 0.9, n, 6);
        Assert.Equal((999.0, "derived"), CeilingsProbe.FitSaturation([], 999));
    }

    [Fact]
    public void Efficiency_comes_from_the_measured_curve_interpolated_in_log_n()
    {
        // Measured: 25% of the best rate at N = 4, 50% at 16, 100% at 64.
        var c = Synthetic.Device() with { RateCurves = CpuCurve((4, 25e9), (16, 50e9), (64, 100e9)) };
        Assert.Equal(0.25, c.Efficiency(4), 12);
        Assert.Equal(0.50, c.Efficiency(16), 12);
        Assert.Equal(0.375, c.Efficiency(8), 12); // halfway between 4 and 16 in log N
        Assert.Equal(1.0, c.Efficiency(64), 12);
        Assert.Equal(1.0, c.Efficiency(10_000), 12);
    }

    [Fact]
    public void Efficiency_below_the_smallest_measured_n_falls_in_proportion_to_n()
    {
        var c = Synthetic.Device() with { RateCurves = CpuCurve((4, 25e9), (64, 100e9)) };
        Assert.Equal(0.0625, c.Efficiency(1), 12);
    }

    [Fact]
    public void Efficiency_ignores_a_rate_that_falls_at_large_n()
    {
        // Past its best the rate drops (caches, a busy host): a larger N is never predicted slower.
        var c = Synthetic.Device() with { RateCurves = CpuCurve((16, 50e9), (64, 100e9), (1024, 60e9)) };
        Assert.Equal(1.0, c.Efficiency(1024), 12);
        Assert.Equal(1.0, c.Efficiency(300), 12);
    }

    [Fact]
    public void Without_a_curve_efficiency_is_n_over_saturation_n()
    {
        Assert.Equal(0.1, Synthetic.Device().Efficiency(100), 12);
        Assert.Equal(1.0, Synthetic.Device().Efficiency(5000), 12);
    }

    [Fact]
    public void Small_batches_are_predicted_below_peak_by_the_measured_curve()
    {
        // One GEMM of N = 16 per sample on a CPU whose rate is half its best at N = 16 and full from N = 64:
        // batch 1 runs at half the peak, batch 4 at the peak, so batch 4 is predicted ~2x the throughput.
        var device = Synthetic.Device(runOverhead: 0, opOverhead: 0) with { RateCurves = CpuCurve((16, 50e9), (64, 100e9)) };
        var predictor = new ThroughputPredictor(device);
        var work = Synthetic.OneGemm(nPerSample: 16, activationBytes: 1, weightBytes: 1);
        var curve = predictor.Predict([1, 4], work.At);
        Assert.Equal(0.5, curve[0].Layers[0].Efficiency, 12);
        Assert.Equal(1e9 / 50e9, curve[0].Layers[0].ComputeSeconds, 12);
        Assert.Equal(1.0, curve[1].Layers[0].Efficiency, 12);
        Assert.Equal(2.0, curve[1].Throughput / curve[0].Throughput, 6);
    }

    private static Dictionary<string, IReadOnlyList<RatePoint>> CpuCurve(params (double N, double Flops)[] points) =>
        new() { ["fp32"] = points.Select(p => new RatePoint(p.N, p.Flops)).ToList() };

    [Fact]
    public void Int8_layer_takes_the_int8_ceiling_and_its_curve_and_a_float_layer_the_float_one()
    {
        // Float layers of an int8 run predict in fp16 (700 TFLOP/s, full at N = 16,384); int8 layers at 1,400 TOP/s,
        // whose curve is at half its best at N = 16,384.
        var gpu = Synthetic.Int8Gpu().For(new Batchwise.Engines.EngineOptions { Precision = Batchwise.Engines.Precision.Int8 });
        var predictor = new ThroughputPredictor(gpu);
        var work = new LayerWork("conv", "Conv", 1e9, 1e3, new GemmShape(64, 16384, 64), 16384, Role: QuantizedRole.Int8);
        var int8 = predictor.Predict(work);
        var fp16 = predictor.Predict(work with { Role = QuantizedRole.Float });
        Assert.Equal(0.5, int8.Efficiency, 9);
        Assert.Equal(1e9 / (1400e12 * 0.5), int8.ComputeSeconds, 15);
        Assert.Equal(1e9 / 700e12, fp16.ComputeSeconds, 15);
    }

    [Fact]
    public void Int8_layer_without_an_int8_ceiling_predicts_at_the_float_rate()
    {
        var gpu = Synthetic.Gpu().For(new Batchwise.Engines.EngineOptions { Precision = Batchwise.Engines.Precision.Int8 });
        var work = new LayerWork("conv", "Conv", 1e9, 1e3, new GemmShape(64, 65536, 64), 65536, Role: QuantizedRole.Int8);
        Assert.Equal(1e9 / 700e12, new ThroughputPredictor(gpu).Predict(work).ComputeSeconds, 15);
    }

    private static DeviceCeilings PowerCapped() => Synthetic.Gpu().WithPrecision("fp16") with
    {
        // Quarter-busy GEMMs keep their clock; two-thirds-busy keep 95% of their rate, the peak GEMM 80%.
        SustainedLoad = new Dictionary<string, IReadOnlyList<SustainedPoint>>
        {
            ["fp16"] = [new(0.25, 1.0), new(0.67, 0.95), new(1.0, 0.8)],
            ["fp32"] = [new(1.0, 0.9)],
        },
    };

    [Fact]
    public void Sustained_factor_interpolates_between_held_gemms_and_is_one_without_them()
    {
        var c = PowerCapped();
        Assert.Equal(1.0, c.SustainedFactor(0));
        Assert.Equal(1.0, c.SustainedFactor(0.2));
        Assert.Equal(0.975, c.SustainedFactor((0.25 + 0.67) / 2), 9);
        Assert.Equal(0.875, c.SustainedFactor(0.67 + (0.33 * 0.5)), 9);
        Assert.Equal(0.8, c.SustainedFactor(1.2), 9);

        // tf32 takes fp32's held GEMMs where none of its own were measured; fp32's one point interpolates from no activity.
        Assert.Equal(0.95, c.WithPrecision("tf32").SustainedFactor(0.5), 9);
        Assert.Equal(1.0, Synthetic.Gpu().SustainedFactor(0.9));
    }

    [Fact]
    public void Sustained_factor_never_rises_with_activity()
    {
        // A busier GEMM measured as keeping more of its rate (noise) does not make a busier run faster.
        var c = Synthetic.Gpu() with { SustainedLoad = new Dictionary<string, IReadOnlyList<SustainedPoint>> { ["fp32"] = [new(0.5, 0.9), new(1.0, 0.97)] } };
        Assert.Equal(0.9, c.SustainedFactor(1.0), 9);
    }

    [Fact]
    public void Busy_runs_are_priced_at_the_sustained_clock_and_light_ones_at_the_full_clock()
    {
        var capped = new ThroughputPredictor(PowerCapped());
        var full = new ThroughputPredictor(PowerCapped() with { SustainedLoad = new Dictionary<string, IReadOnlyList<SustainedPoint>>() });

        // One fp16 GEMM of N = 100,000 a sample: at the peak rate, no memory or launch cost to speak of, so the run keeps
        // nearly all the arithmetic busy and loses what the peak GEMM lost held.
        var busy = Synthetic.OneGemm(nPerSample: 100_000, flopsPerSample: 1e12, activationBytes: 1e3, weightBytes: 1e3);
        var heavy = capped.Predict(8, busy.At(8));
        Assert.InRange(heavy.FullClockActivity, 0.99, 1.0);
        Assert.InRange(heavy.SustainedFactor, 0.80, 0.801);
        Assert.Equal(full.Predict(8, busy.At(8)).Throughput * heavy.SustainedFactor, heavy.Throughput, 1e-3 * heavy.Throughput);

        // The same GEMM at 1 kFLOP a sample: the run's launch and run costs dominate, the clock stays, nothing changes.
        var light = Synthetic.OneGemm(nPerSample: 100_000, flopsPerSample: 1e3, activationBytes: 1e3, weightBytes: 1e3);
        Assert.Equal(1.0, capped.Predict(8, light.At(8)).SustainedFactor);
        Assert.Equal(full.Predict(8, light.At(8)).Throughput, capped.Predict(8, light.At(8)).Throughput);
    }

    [Fact]
    public void Memory_bound_time_is_not_slowed_by_the_sustained_clock()
    {
        // Half the run in a peak-rate GEMM, half in a memory-bound copy: activity one half, and only the GEMM's time grows.
        var c = PowerCapped();
        var predictor = new ThroughputPredictor(c);
        IReadOnlyList<LayerWork> layers =
        [
            new LayerWork("gemm", "MatMul", 700e9, 1e3, new GemmShape(1_000_000, 4096, 4096), 1_000_000),
            new LayerWork("copy", "Add", 0, 2e9),
        ];
        var p = predictor.Predict(1, layers);
        Assert.InRange(p.FullClockActivity, 0.49, 0.51);
        var f = c.SustainedFactor(p.FullClockActivity);
        Assert.Equal(f, p.SustainedFactor, 9);
        Assert.Equal(1e-3 / f, p.Layers[0].ComputeSeconds, 9);
        Assert.Equal(1e-3, p.Layers[1].MemorySeconds, 9);
    }
}
