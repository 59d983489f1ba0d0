using Batchwise.Analysis;
using Batchwise.Benchmarking;
using Batchwise.Zoo;

namespace Batchwise.Tests.Analysis;

public sealed class ExplainerTests
{
    [Fact]
    public void Verdict_says_batching_helps_when_n_is_below_saturation()
    {
        var e = Explainer.Explain(Synthetic.OneGemm(100), Synthetic.Device(), [1, 2, 4, 8, 16, 32], []);
        Assert.Contains(e.Verdict, l => l.Contains("below this device's ~1,000", StringComparison.Ordinal) && l.Contains("b≈10", StringComparison.Ordinal));
        Assert.Null(e.Error);
        Assert.Equal(16, e.PredictedKnee);
    }

    [Fact]
    public void Verdict_says_batch_one_already_fills_the_device_when_n_is_large()
    {
        var e = Explainer.Explain(Synthetic.OneGemm(102_400), Synthetic.Device(saturationN: 20_000), [1, 8], []);
        Assert.Contains(e.Verdict, l => l.Contains("N = 102,400", StringComparison.Ordinal) && l.Contains("past this device's ~20,000", StringComparison.Ordinal));
    }

    [Fact]
    public void Prediction_within_30_percent_is_called_fair()
    {
        var device = Synthetic.Device();
        var work = Synthetic.OneGemm(100);
        var predicted = new ThroughputPredictor(device).Predict([1, 8], work.At);
        var measured = predicted.Select(p => new MeasuredPoint(p.BatchSize, p.Throughput * 0.9, p.Seconds / 0.9, p.Seconds, 10)).ToList();
        var e = Explainer.Explain(work, device, [1, 8], measured);
        Assert.NotNull(e.Error);
        Assert.False(e.Error!.IsOff);
        Assert.Equal(0.1 / 0.9, e.Error.AtFirst, 6);
        Assert.Contains(e.Verdict, l => l.Contains("Within 30", StringComparison.Ordinal));
    }

    [Fact]
    public void Prediction_off_by_more_than_30_percent_says_so_in_words()
    {
        var device = Synthetic.Device();
        var work = Synthetic.OneGemm(100);
        var predicted = new ThroughputPredictor(device).Predict([1, 8], work.At);
        var measured = predicted.Select(p => new MeasuredPoint(p.BatchSize, p.Throughput / 2, p.Seconds * 2, p.Seconds * 2, 10)).ToList();
        var e = Explainer.Explain(work, device, [1, 8], measured);
        Assert.True(e.Error!.IsOff);
        Assert.Contains(e.Verdict, l => l.Contains("off by more than 30", StringComparison.Ordinal) && l.Contains("predicted faster", StringComparison.Ordinal));
    }

    [Fact]
    public void A_gpu_clock_that_fell_or_was_held_by_power_between_the_measured_points_is_called_out()
    {
        var device = Synthetic.Device();
        var work = Synthetic.OneGemm(100);
        static DeviceClocks Clocks(double mhz, double powerCap = 0) => new(mhz, 650, powerCap > 0 ? new Dictionary<string, double> { ["power cap"] = powerCap } : new Dictionary<string, double>(), 10);
        MeasuredPoint At(int b, DeviceClocks clocks) => new(b, 10 * b, 0.1, 0.1, 3) { Clocks = clocks };

        var fell = Explainer.Explain(work, device, [1, 64], [At(1, Clocks(1980)), At(64, Clocks(1740, powerCap: 0.7))]);
        Assert.Contains(fell.Verdict, l => l.Contains("SM clock while measured: 1,980 MHz at b=1 down to 1,740 MHz at b=64; held by the power cap at b=64", StringComparison.Ordinal));

        // Steady within 5% and never held: nothing to say; no clocks (a CPU): nothing either.
        var steady = Explainer.Explain(work, device, [1, 64], [At(1, Clocks(1980)), At(64, Clocks(1950, powerCap: 0.05))]);
        Assert.DoesNotContain(steady.Verdict, l => l.Contains("SM clock", StringComparison.Ordinal));
        Assert.DoesNotContain(Explainer.Explain(work, device, [1], [new MeasuredPoint(1, 10, 0.1, 0.1, 3)]).Verdict, l => l.Contains("SM clock", StringComparison.Ordinal));
    }

    [Fact]
    public void A_prediction_priced_at_the_sustained_clock_says_from_which_batch_and_how_much()
    {
        // fp16 GEMM of N = 1,000 a sample on the synthetic GPU (full at N = 16,384): b=1 keeps it 6% busy, b=64 fully.
        var gpu = Synthetic.Gpu().WithPrecision("fp16") with
        {
            SustainedLoad = new Dictionary<string, IReadOnlyList<SustainedPoint>> { ["fp16"] = [new(0.25, 1.0), new(1.0, 0.8)] },
        };
        var work = Synthetic.OneGemm(nPerSample: 1000, flopsPerSample: 1e10, activationBytes: 1e3, weightBytes: 1e3);
        var e = Explainer.Explain(work, gpu, [1, 64], []);
        Assert.Equal(1.0, e.Predicted[0].SustainedFactor);
        Assert.InRange(e.Predicted[1].SustainedFactor, 0.8, 0.81);
        Assert.Contains(e.Verdict, l => l.StartsWith("Sustained load:", StringComparison.Ordinal) && l.Contains("at b=64", StringComparison.Ordinal));
        var json = ExplainDocument.From(e, new Dictionary<string, string>());
        Assert.Null(json.Predicted[0].SustainedFactor);
        Assert.Equal(e.Predicted[1].SustainedFactor, json.Predicted[1].SustainedFactor);

        // Without held GEMMs in the ceilings: no such line.
        Assert.DoesNotContain(Explainer.Explain(work, Synthetic.Gpu().WithPrecision("fp16"), [1, 64], []).Verdict, l => l.StartsWith("Sustained load:", StringComparison.Ordinal));
    }

    [Fact]
    public void Busy_host_is_called_out()
    {
        var device = Synthetic.Device();
        var work = Synthetic.OneGemm(100);
        var measured = new[] { new MeasuredPoint(1, 10, 0.1, 0.1, 3) };
        var e = Explainer.Explain(work, device, [1], measured, loadAverage: 1000);
        Assert.Contains(e.Verdict, l => l.Contains("busy while measuring", StringComparison.Ordinal));
    }

    [Fact]
    public void Top_layers_are_ranked_by_predicted_time_at_the_largest_batch()
    {
        var work = ModelWork.FromLayers("two", "x", [
            ModelWork.Layer("small", "Conv", 1e6, 1e3, 0, new GemmShape(8, 10_000, 8)),
            ModelWork.Layer("big", "Conv", 1e9, 1e3, 0, new GemmShape(8, 10_000, 8)),
        ]);
        var e = Explainer.Explain(work, Synthetic.Device(), [1, 4], [], top: 1);
        Assert.Equal("big", Assert.Single(e.TopLayers).AtLast.Work.Name);
    }

    [Fact]
    public void Layers_of_one_shape_make_one_row_whose_share_counts_them_all()
    {
        var work = ModelWork.FromLayers("repeats", "x", [
            ModelWork.Layer("block1", "Conv", 1e9, 1e3, 0, new GemmShape(8, 10_000, 8)),
            ModelWork.Layer("block2", "Conv", 1e9, 1e3, 0, new GemmShape(8, 10_000, 8)),
            ModelWork.Layer("head", "Conv", 1.5e9, 1e3, 0, new GemmShape(16, 10_000, 8)),
        ]);
        var e = Explainer.Explain(work, Synthetic.Device(), [1], []);
        Assert.Equal(2, e.TopLayers.Count);
        Assert.Equal("block1 (x2)", e.TopLayers[0].Label);
        Assert.Equal(2e9 / 3.5e9, e.TopLayers[0].ShareAtLast, 2);
        Assert.Equal("head", e.TopLayers[1].Label);
    }

    [Fact]
    public void Fp16_ceiling_turns_the_fp16_lever_into_a_number()
    {
        // Compute-bound at the largest batch: twice the rate and half the bytes give about 2x.
        var device = Synthetic.Device() with { PeakFlopsFp16 = 200e9 };
        var e = Explainer.Explain(Synthetic.OneGemm(100_000, activationBytes: 1e3, weightBytes: 1e3), device, [1, 8], []);
        Assert.Contains(e.Verdict, l => l.StartsWith("FP16 would give ~2.0x", StringComparison.Ordinal));
    }

    [Fact]
    public void Fp16_lever_compares_with_the_precision_in_use()
    {
        var gpu = Synthetic.Gpu().For(new Batchwise.Engines.EngineOptions { AllowTf32 = true });
        var e = Explainer.Explain(Synthetic.OneGemm(1_000_000, flopsPerSample: 1e11, activationBytes: 1e3, weightBytes: 1e3), gpu, [1, 8], []);
        Assert.Contains(e.Verdict, l => l.StartsWith("FP16 would give ~2.0x at b=8 (700.0 TFLOP/s fp16 vs 350.0 tf32", StringComparison.Ordinal));
    }

    [Fact]
    public void Explaining_in_fp16_uses_the_fp16_ceiling_and_half_the_bytes()
    {
        var work = Synthetic.OneGemm(1_000_000, activationBytes: 1e6, weightBytes: 1e6);
        var gpu = Synthetic.Gpu();
        var fp32 = Explainer.Explain(work, gpu.For(new Batchwise.Engines.EngineOptions()), [1], []);
        var fp16 = Explainer.Explain(work, gpu.For(new Batchwise.Engines.EngineOptions { Precision = Batchwise.Engines.Precision.Fp16 }), [1], []);
        Assert.Equal(work.At(1)[0].Bytes / 2, fp16.Predicted[0].Layers[0].Work.Bytes);
        Assert.Equal(1e9 / 700e12, fp16.Predicted[0].Layers[0].ComputeSeconds, 15);
        Assert.Equal(1e9 / 50e12, fp32.Predicted[0].Layers[0].ComputeSeconds, 15);
        Assert.Contains(fp16.Verdict, l => l.StartsWith("Predicted in fp16 (700.0 TFLOP/s", StringComparison.Ordinal));
        Assert.DoesNotContain(fp16.Verdict, l => l.StartsWith("FP16 would give", StringComparison.Ordinal));
    }

    [Fact]
    public void An_error_that_rounds_to_zero_reads_0_percent()
    {
        var work = Synthetic.OneGemm(100_000);
        var device = Synthetic.Device();
        var predicted = new ThroughputPredictor(device).Predict(1, work.At(1)).Throughput;
        var fast = predicted * 1.001; // 0.1% faster than predicted: an error of -0.1%, which rounds to 0%
        var e = Explainer.Explain(work, device, [1], [new MeasuredPoint(1, fast, 1 / fast, 1 / fast, 10, 1 / fast)]);
        var line = e.Verdict.Single(l => l.StartsWith("Prediction error", StringComparison.Ordinal));
        Assert.StartsWith("Prediction error: 0% at b=1, 0% at b=1", line, StringComparison.Ordinal);
        Assert.Contains("fastest run of each batch size: 0% and 0%", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Explain_names_layers_it_cannot_cost_and_continues()
    {
        var work = ModelWork.Analyze(CostModelTests.WithUnknownOperator(), null);
        var e = Explainer.Explain(work, Synthetic.Device(), [1, 4], []);

        Assert.Equal(3, e.Uncosted.Count);
        var line = Assert.Single(e.Verdict, v => v.StartsWith("Not costed", StringComparison.Ordinal));
        Assert.Contains("com.example.Mystery 'mystery'", line, StringComparison.Ordinal);
        Assert.Contains("Relu 'relu'", line, StringComparison.Ordinal);
        Assert.True(e.Predicted[0].Throughput > 0);
    }

    private static readonly Batchwise.Engines.EngineOptions Int8Options = new() { Precision = Batchwise.Engines.Precision.Int8 };

    /// <summary>A large int8 convolution (N = 65,536 per sample: both curves full), a small-N one (N = 1: both rates idle alike) and a quantize pass.</summary>
    private static ModelWork Int8Model(bool withSmall = true)
    {
        var layers = new List<(LayerWork, double)>
        {
            Synthetic.Layer("big", "Conv", 1e11, 1e3, 1e3, new GemmShape(64, 65536, 64), QuantizedRole.Int8),
            Synthetic.Layer("input_QuantizeLinear", "QuantizeLinear", 1e3, 1e4, 0, null, QuantizedRole.QuantizePass),
        };
        if (withSmall)
        {
            layers.Add(Synthetic.Layer("small", "Conv", 1e9, 1e3, 1e3, new GemmShape(64, 1, 64), QuantizedRole.Int8));
        }

        return ModelWork.FromLayers("int8-model", "x [1, 8]", layers);
    }

    [Fact]
    public void Int8_verdict_says_where_int8_pays_and_where_it_does_not()
    {
        var e = Explainer.Explain(Int8Model(), Synthetic.Int8Gpu().For(Int8Options), [1, 8], []);
        Assert.Equal(e.Predicted.Count, e.FloatPredicted.Count);
        Assert.Contains(e.Verdict, l => l.StartsWith("Int8 (2 layers int8, the rest fp16; int8 ceiling 1,400.00 TOP/s against 700.00 TFLOP/s fp16)", StringComparison.Ordinal));
        Assert.Contains(e.Verdict, l => l.StartsWith("Where int8 pays at b=8", StringComparison.Ordinal) && l.Contains("big Conv", StringComparison.Ordinal) && l.Contains("2.0x", StringComparison.Ordinal));
        Assert.Contains(e.Verdict, l => l.StartsWith("Where it does not:", StringComparison.Ordinal) && l.Contains("small Conv", StringComparison.Ordinal) && l.Contains("small N", StringComparison.Ordinal));
        Assert.Contains(e.Verdict, l => l.StartsWith("Quantize and dequantize passes between float and int8 layers (not fused): 1 per run", StringComparison.Ordinal));
        Assert.DoesNotContain(e.Verdict, l => l.StartsWith("FP16", StringComparison.Ordinal) || l.StartsWith("Predicted in fp16", StringComparison.Ordinal));
    }

    [Fact]
    public void Int8_gain_is_against_the_same_model_in_float_without_its_quantize_passes()
    {
        var e = Explainer.Explain(Int8Model(withSmall: false), Synthetic.Int8Gpu().For(Int8Options), [8], []);
        var int8 = e.Predicted[0];
        var fp16 = e.FloatPredicted[0];
        Assert.Equal(2, int8.Layers.Count);
        Assert.Equal("big", Assert.Single(fp16.Layers).Work.Name);
        Assert.Equal(8e11 / 1400e12, int8.Layers[0].ComputeSeconds, 15);
        Assert.Equal(8e11 / 700e12, fp16.Layers[0].ComputeSeconds, 15);
        Assert.Contains(e.Verdict, l => l.Contains("(int8 pays)", StringComparison.Ordinal));
    }

    [Fact]
    public void Int8_without_an_int8_ceiling_says_so()
    {
        var e = Explainer.Explain(Int8Model(), Synthetic.Gpu().For(Int8Options), [1, 8], []);
        Assert.Contains(e.Verdict, l => l.Contains("no int8 ceiling was measured on synthetic GPU via cuda", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(2000, 1000, "confirms that int8 pays here.")]
    [InlineData(1000, 1000, "contradicts that int8 pays here (int8 gains little measured).")]
    public void Measured_int8_against_measured_float_confirms_or_contradicts_the_prediction(double int8Throughput, double floatThroughput, string expected)
    {
        var e = Explainer.Explain(Int8Model(withSmall: false), Synthetic.Int8Gpu().For(Int8Options), [8], [new MeasuredPoint(8, int8Throughput, 1e-3, 1e-3, 10)], floatMeasured: [new MeasuredPoint(8, floatThroughput, 1e-3, 1e-3, 10)]);
        Assert.Contains(e.Verdict, l => l.StartsWith("Measured at b=8: int8", StringComparison.Ordinal) && l.EndsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Fp16_prediction_adds_a_conversion_kernel_for_each_float_input_and_output()
    {
        // zoo:mlp: input [b, 64] float32 in, softmax [b, 10] float32 out; the cuda engine's fp16 plan converts both.
        var work = ModelWork.Analyze(ModelZoo.Build("zoo:mlp"), null, fusesEpilogues: true);
        Assert.Equal([new BoundaryTensor("input", true, 64), new BoundaryTensor("probabilities", false, 10)], work.FloatBoundaries);

        var gpu = Synthetic.Gpu() with { KernelFloorSeconds = 2e-6 };
        var fp16 = Explainer.Explain(work, gpu.WithPrecision("fp16"), [1, 256], []);
        var fp32 = Explainer.Explain(work, gpu, [1, 256], []);
        var first = fp16.Predicted[1].Layers[0];
        var last = fp16.Predicted[1].Layers[^1];
        Assert.Equal(("input input to fp16", "Cast", 6.0 * 64 * 256), (first.Work.Name, first.Work.OpType, first.Work.Bytes));
        Assert.Equal(("output probabilities to fp32", 6.0 * 10 * 256), (last.Work.Name, last.Work.Bytes));
        Assert.Equal(2e-6, first.OverheadSeconds); // a kernel of its own: at least the kernel floor
        Assert.Equal(work.At(1).Count + 2, fp16.Predicted[0].Layers.Count);
        Assert.Equal(work.At(1).Count, fp32.Predicted[0].Layers.Count);
        Assert.DoesNotContain(fp32.Predicted[0].Layers, l => l.Work.OpType == "Cast");
    }

    [Fact]
    public void Fp16_prediction_at_batch_one_has_no_conversion_after_a_classifiers_one_row_gemm()
    {
        // ResNet-50's logits are its Gemm's output, read by nothing else: at b=1 the engine's small-row kernel writes them
        // in float32 itself; from b=2 (cuBLASLt) a conversion kernel follows as before.
        var work = ModelWork.Analyze(ModelZoo.Build("zoo:resnet50"), null, fusesEpilogues: true);
        var logits = Assert.Single(work.FloatBoundaries, t => !t.IsInput);
        Assert.True(logits.OneRowProductAtBatchOne);
        var fp16 = Explainer.Explain(work, (Synthetic.Gpu() with { KernelFloorSeconds = 2e-6 }).WithPrecision("fp16"), [1, 2], []);
        var atOne = Assert.Single(fp16.Predicted[0].Layers, l => l.Work.Name.StartsWith("output ", StringComparison.Ordinal));
        var atTwo = Assert.Single(fp16.Predicted[1].Layers, l => l.Work.Name.StartsWith("output ", StringComparison.Ordinal));
        Assert.Equal(0, atOne.Seconds);
        Assert.True(atTwo.Seconds >= 2e-6, $"{atTwo.Seconds}"); // a kernel of its own: at least the floor

        // zoo:mlp's output is a Softmax's: converted at every batch.
        Assert.False(Assert.Single(ModelWork.Analyze(ModelZoo.Build("zoo:mlp"), null).FloatBoundaries, t => !t.IsInput).OneRowProductAtBatchOne);
    }
}
