using System.Globalization;

namespace Batchwise.Analysis;

/// <summary>One costly layer as explain shows it: its work at batch 1 and how its time behaves as the batch grows.</summary>
/// <param name="AtFirst">Prediction at the smallest batch.</param>
/// <param name="AtLast">Prediction at the largest batch.</param>
/// <param name="ShareAtLast">Share of the run's predicted time at the largest batch.</param>
/// <param name="SaturationBatch">Batch at which the layer's GEMM N fills the device (null for non-GEMM layers).</param>
/// <param name="Alike">Layers of the same operator, shape and cost that this row stands for (1 = just this one); the share counts them all.</param>
public sealed record LayerRow(LayerPrediction AtFirst, LayerPrediction AtLast, double ShareAtLast, int? SaturationBatch, int Alike = 1)
{
    /// <summary>The layer's name, with how many alike layers it stands for.</summary>
    public string Label => Alike > 1 ? string.Create(CultureInfo.InvariantCulture, $"{AtFirst.Work.Name} (x{Alike})") : AtFirst.Work.Name;
}

/// <summary>How far the prediction is from the measurement (positive: predicted faster than measured).</summary>
/// <param name="AtFirst">Relative throughput error at the smallest batch.</param>
/// <param name="AtLast">Relative throughput error at the largest batch.</param>
/// <param name="PredictedKnee">Knee of the predicted curve.</param>
/// <param name="MeasuredKnee">Knee of the measured curve.</param>
/// <param name="BestRunAtFirst">Relative error against the fastest measured run at the smallest batch (NaN where unknown).</param>
/// <param name="BestRunAtLast">Relative error against the fastest measured run at the largest batch (NaN where unknown).</param>
public sealed record PredictionError(double AtFirst, double AtLast, int PredictedKnee, int MeasuredKnee, double BestRunAtFirst = double.NaN, double BestRunAtLast = double.NaN)
{
    /// <summary>Relative error above which explain says plainly that the model is off.</summary>
    public const double Tolerance = 0.30;

    /// <summary>True when either throughput error passes <see cref="Tolerance"/>.</summary>
    public bool IsOff => Math.Abs(AtFirst) > Tolerance || Math.Abs(AtLast) > Tolerance;
}

/// <summary>Why batching helps or not for one model on one device: prediction, measurement, costly layers, verdict.</summary>
public sealed record Explanation
{
    /// <summary>Model name.</summary>
    public required string ModelName { get; init; }

    /// <summary>Input shapes at batch 1.</summary>
    public required string Input { get; init; }

    /// <summary>The device's ceilings used.</summary>
    public required DeviceCeilings Ceilings { get; init; }

    /// <summary>Predicted run at each batch size.</summary>
    public required IReadOnlyList<BatchPrediction> Predicted { get; init; }

    /// <summary>Measured points (empty when nothing was measured).</summary>
    public required IReadOnlyList<MeasuredPoint> Measured { get; init; }

    /// <summary>The layers that cost most, most costly first.</summary>
    public required IReadOnlyList<LayerRow> TopLayers { get; init; }

    /// <summary>Prediction error, where there is a measurement.</summary>
    public PredictionError? Error { get; init; }

    /// <summary>The verdict: plain sentences with numbers.</summary>
    public required IReadOnlyList<string> Verdict { get; init; }

    /// <summary>For a model with int8 layers: the same model predicted in float (int8 layers as the float layers they replace), at the same batch sizes; else empty.</summary>
    public IReadOnlyList<BatchPrediction> FloatPredicted { get; init; } = [];

    /// <summary>For a float model explained in int8: the float model measured at the float precision (the int8 verdict's check); else empty.</summary>
    public IReadOnlyList<MeasuredPoint> FloatMeasured { get; init; } = [];

    /// <summary>Layers that could not be costed, each as "Op 'name': why" (the prediction counts them as zero).</summary>
    public IReadOnlyList<string> Uncosted { get; init; } = [];

    /// <summary>The host's 1-minute load average after the measurement (Linux), or null.</summary>
    public double? LoadAverage { get; init; }

    /// <summary>Logical cores of the host measured.</summary>
    public int LogicalCores { get; init; } = Environment.ProcessorCount;

    /// <summary>Total FLOPs per sample.</summary>
    public double FlopsPerSample => Predicted[0].Layers.Sum(l => l.Work.Flops) / Predicted[0].BatchSize;

    /// <summary>Knee of the predicted curve.</summary>
    public int PredictedKnee => Explainer.KneeOf(Predicted.Select(p => (p.BatchSize, p.Throughput)).ToList());

    /// <summary>Knee of the measured curve, or null.</summary>
    public int? MeasuredKnee => Measured.Count == 0 ? null : Explainer.KneeOf(Measured.Select(p => (p.BatchSize, p.Throughput)).ToList());
}

/// <summary>Builds an <see cref="Explanation"/> from a model's work, the device's ceilings and (optionally) a measured sweep.</summary>
public static class Explainer
{
    /// <summary>The knee of a curve (the smallest batch within 90% of the best throughput), as bench finds it.</summary>
    public static int KneeOf(IEnumerable<(int BatchSize, double Throughput)> curve) =>
        Batchwise.Benchmarking.Knee.Find(curve)?.KneeBatchSize ?? throw new ArgumentException("An empty curve has no knee", nameof(curve));

    /// <summary>Predicts the curve, ranks the layers, compares with the measurement and writes the verdict.</summary>
    /// <param name="work">The model's layers.</param>
    /// <param name="ceilings">The device.</param>
    /// <param name="batchSizes">Batch sizes to predict (the measured ones are added).</param>
    /// <param name="measured">Measured points, or empty.</param>
    /// <param name="top">How many costly layers to list.</param>
    /// <param name="smallerInput">The same model at a smaller input, for the input-size lever (optional).</param>
    /// <param name="loadAverage">The host's load average while measuring (optional; a busy host is called out).</param>
    /// <param name="floatMeasured">For a model with int8 layers, the float model measured (optional).</param>
    public static Explanation Explain(ModelWork work, DeviceCeilings ceilings, IReadOnlyList<int> batchSizes, IReadOnlyList<MeasuredPoint> measured, int top = 10, (InputSize From, InputSize To, ModelWork Work)? smallerInput = null, double? loadAverage = null, IReadOnlyList<MeasuredPoint>? floatMeasured = null)
    {
        ArgumentNullException.ThrowIfNull(work);
        ArgumentNullException.ThrowIfNull(ceilings);
        ArgumentNullException.ThrowIfNull(batchSizes);
        ArgumentNullException.ThrowIfNull(measured);
        var batches = batchSizes.Concat(measured.Select(m => m.BatchSize)).Distinct().Order().ToList();
        if (batches.Count == 0 || batches[0] < 1)
        {
            throw new BatchwiseException("No batch sizes to explain", "Pass --batch-sizes 1,2,4,8 (positive integers).");
        }

        var predictor = new ThroughputPredictor(ceilings);
        var predicted = predictor.Predict(batches, LayersAt(work, ceilings));
        var first = predicted[0];
        var last = predicted[^1];
        // Layers of one shape (a ResNet stage repeats its blocks) make one row, so the table shows distinct work.
        var rows = last.Layers
            .Select((l, i) => (Last: l, First: first.Layers[i]))
            .GroupBy(x => (x.Last.Work.OpType, x.Last.Work.GemmText, Math.Round(x.Last.Work.Flops), Math.Round(x.Last.Work.Bytes)))
            .Select(g => new LayerRow(
                g.First().First,
                g.First().Last,
                g.Sum(x => x.Last.Seconds) / last.Seconds,
                g.First().First.Work.ParallelSize is { } n ? predictor.SaturationBatch(n / first.BatchSize) : null,
                g.Count()))
            .OrderByDescending(r => r.ShareAtLast)
            .Take(Math.Max(1, top))
            .ToList();

        PredictionError? error = null;
        if (measured.Count > 0)
        {
            var m = measured.OrderBy(p => p.BatchSize).ToList();
            double Err(MeasuredPoint p, double measuredThroughput) => (predicted.First(x => x.BatchSize == p.BatchSize).Throughput - measuredThroughput) / measuredThroughput;
            error = new PredictionError(
                Err(m[0], m[0].Throughput),
                Err(m[^1], m[^1].Throughput),
                Explainer.KneeOf(predicted.Where(p => m.Any(x => x.BatchSize == p.BatchSize)).Select(p => (p.BatchSize, p.Throughput)).ToList()),
                Explainer.KneeOf(m.Select(p => (p.BatchSize, p.Throughput)).ToList()),
                Err(m[0], m[0].BestRunThroughput),
                Err(m[^1], m[^1].BestRunThroughput));
        }

        var explanation = new Explanation
        {
            ModelName = work.ModelName,
            Input = work.InputDescription,
            Ceilings = ceilings,
            Predicted = predicted,
            Measured = measured.OrderBy(p => p.BatchSize).ToList(),
            TopLayers = rows,
            Uncosted = work.Uncosted,
            Error = error,
            Verdict = [],
            LoadAverage = measured.Count > 0 ? loadAverage : null,
            FloatPredicted = work.HasInt8 ? predictor.Predict(batches, LayersAt(work.AsFloat(), ceilings)) : [],
            FloatMeasured = work.HasInt8 && floatMeasured is not null ? floatMeasured.OrderBy(p => p.BatchSize).ToList() : [],
        };
        return explanation with { Verdict = Verdict(explanation, predictor, smallerInput) };
    }

    private static List<string> Verdict(Explanation e, ThroughputPredictor predictor, (InputSize From, InputSize To, ModelWork Work)? smallerInput)
    {
        var c = e.Ceilings;
        var first = e.Predicted[0];
        var last = e.Predicted[^1];
        var lines = new List<string>();
        var gain = last.Throughput / first.Throughput;
        lines.Add(F($"Predicted: {Units.Rate(first.Throughput)}/s at b={first.BatchSize}, {Units.Rate(last.Throughput)}/s at b={last.BatchSize} ({gain:N2}x); knee at b={e.PredictedKnee}."));
        if (e.Measured.Count > 0)
        {
            var m0 = e.Measured[0];
            var m1 = e.Measured[^1];
            lines.Add(F($"Measured: {Units.Rate(m0.Throughput)}/s at b={m0.BatchSize}, {Units.Rate(m1.Throughput)}/s at b={m1.BatchSize} ({m1.Throughput / m0.Throughput:N2}x); knee at b={e.MeasuredKnee}."));
        }

        // Why: where the big GEMMs stand against the device's parallel width at batch 1.
        var gemms = first.Layers.Where(l => l.Work.ParallelSize is not null && l.Work.Flops > 0).OrderByDescending(l => l.Work.Flops).ToList();
        var totalFlops = first.Layers.Sum(l => l.Work.Flops);
        if (gemms.Count > 0)
        {
            // The GEMMs that together hold half of the GEMM FLOPs, starting from the largest.
            var gemmFlops = gemms.Sum(g => g.Work.Flops);
            var big = new List<LayerPrediction>();
            double acc = 0;
            foreach (var g in gemms)
            {
                big.Add(g);
                acc += g.Work.Flops;
                if (acc >= gemmFlops / 2)
                {
                    break;
                }
            }

            // N for convolutions; for MatMul and Gemm the batch-scaled dimension is the rows (batch x sequence).
            var dim = big.Count(g => g.Work.OpType is "Conv" or "ConvTranspose") * 2 >= big.Count ? "N" : "rows (M)";
            var n1 = big.Select(g => g.Work.ParallelSize!.Value / first.BatchSize).Order().ElementAt(big.Count / 2);
            var minN = big.Min(g => g.Work.ParallelSize!.Value / first.BatchSize);
            var share = gemmFlops / Math.Max(1, totalFlops);
            if (minN >= c.SaturationN)
            {
                lines.Add(F($"At b=1 the largest GEMMs ({big.Count} layers holding half the GEMM FLOPs; GEMMs are {share:P0} of all FLOPs) already have {dim} = {n1:N0} per sample (smallest {minN:N0}), past this device's ~{c.SaturationN:N0}: they fill it without batching, so batching can only spread the per-run overhead and weight reads — at most {gain:N2}x predicted."));
            }
            else if (n1 >= c.SaturationN)
            {
                lines.Add(F($"At b=1 most of the largest GEMMs (median {dim} = {n1:N0} per sample) already fill this device's ~{c.SaturationN:N0}; only the smallest ({dim} = {minN:N0}) leave compute idle, until b≈{predictor.SaturationBatch(minN)}: batching gives little — at most {gain:N2}x predicted."));
            }
            else
            {
                lines.Add(F($"At b=1 the largest GEMMs have {dim} = {n1:N0} per sample (smallest {minN:N0}), below this device's ~{c.SaturationN:N0}: they leave compute idle until b≈{predictor.SaturationBatch(n1)}, which is why batching helps — up to {gain:N2}x predicted."));
            }
        }
        else
        {
            lines.Add("The model has no Conv, MatMul or Gemm layers: it is bound by memory traffic and per-op overhead, which batching amortises only by spreading the per-run cost.");
        }

        lines.Add(F($"Time at b={first.BatchSize}: {Shares(first)}; at b={last.BatchSize}: {Shares(last)}."));
        if (RatesLine(c, last) is { } rates)
        {
            lines.Add(rates);
        }

        if (e.Uncosted.Count > 0)
        {
            lines.Add(F($"Not costed: {e.Uncosted.Count} layer{(e.Uncosted.Count == 1 ? string.Empty : "s")} Batchwise cannot infer or cost count as zero time, so the prediction is optimistic: {string.Join("; ", e.Uncosted.Take(5))}{(e.Uncosted.Count > 5 ? "; ..." : string.Empty)}."));
        }

        // Levers.
        if (e.FloatPredicted.Count > 0)
        {
            lines.AddRange(Int8Verdict(e));
        }
        else if (c.Precision == "fp16")
        {
            lines.Add(F($"Predicted in fp16 ({c.PeakInUse / 1e12:N1} TFLOP/s fp16 GEMM ceiling, against {c.PeakFlops / 1e12:N1} fp32{(c.PeakFlopsTf32 is { } t ? F($" and {t / 1e12:N1} tf32") : string.Empty)}), and half the graph's fp32 bytes moved, plus a conversion kernel for each float32 input and output)."));
        }
        else if (c.PeakFlopsFp16 is { } fp16 && fp16 > 0)
        {
            var half = new ThroughputPredictor(c.WithPrecision("fp16")).Predict(last.BatchSize, last.Layers.Select(l => l.Work with { Bytes = l.Work.Bytes / 2 }).ToList());
            lines.Add(F($"FP16 would give ~{half.Throughput / last.Throughput:N1}x at b={last.BatchSize} ({fp16 / 1e12:N1} TFLOP/s fp16 vs {c.PeakInUse / 1e12:N1} {c.Precision}, half the bytes)."));
        }
        else
        {
            lines.Add(F($"FP16: no fp16 GEMM ceiling on {c.Device} via {c.Engine} — ONNX Runtime's CPU kernels gain little from fp16; on a GPU with tensor cores expect ~2x or more for compute-bound layers."));
        }

        if (smallerInput is { } s)
        {
            var smallAt = LayersAt(s.Work, c);
            var small = predictor.Predict(last.BatchSize, smallAt(last.BatchSize));
            var smallFirst = predictor.Predict(first.BatchSize, smallAt(first.BatchSize));
            lines.Add(F($"Input {s.From}→{s.To}: ~{small.Throughput / last.Throughput:N1}x at b={last.BatchSize}, ~{smallFirst.Throughput / first.Throughput:N1}x at b={first.BatchSize} (predicted)."));
        }

        if (c.Details.TryGetValue("load_average", out var calibrationLoadText)
            && double.TryParse(calibrationLoadText, NumberStyles.Float, CultureInfo.InvariantCulture, out var calibrationLoad)
            && calibrationLoad > e.LogicalCores)
        {
            lines.Add(F($"The ceilings were measured on a busy machine (load average {calibrationLoad:N1} on {e.LogicalCores} logical cores); run explain --recalibrate when it is quiet for firmer numbers."));
        }

        if (e.LoadAverage is { } load && load > e.LogicalCores)
        {
            lines.Add(F($"The machine was busy while measuring (load average {load:N1} on {e.LogicalCores} logical cores): other processes took CPU time, so measured throughput is below what this device does alone, while the ceilings (best of many short runs) catch its quiet moments."));
        }

        if (SustainedLine(e.Predicted) is { } sustained)
        {
            lines.Add(sustained);
        }

        if (ClockVerdict(e.Measured, e.Predicted.Any(p => p.SustainedFactor < 1)) is { } clocks)
        {
            lines.Add(clocks);
        }

        // Honesty: say where the model is off.
        if (e.Error is { } err)
        {
            var text = F($"Prediction error: {err.AtFirst:+0%;-0%;0%} at b={e.Measured[0].BatchSize}, {err.AtLast:+0%;-0%;0%} at b={e.Measured[^1].BatchSize}; knee predicted b={err.PredictedKnee}, measured b={err.MeasuredKnee}.");
            if (double.IsFinite(err.BestRunAtFirst) && double.IsFinite(err.BestRunAtLast))
            {
                text += F($" Against the fastest run of each batch size: {err.BestRunAtFirst:+0%;-0%;0%} and {err.BestRunAtLast:+0%;-0%;0%}.");
            }

            if (err.IsOff)
            {
                var worst = Math.Abs(err.AtFirst) >= Math.Abs(err.AtLast) ? (err.AtFirst, e.Measured[0].BatchSize) : (err.AtLast, e.Measured[^1].BatchSize);
                text += F($" The model is off by more than {PredictionError.Tolerance:P0} (worst {Math.Abs(worst.Item1):P0} at b={worst.Item2}, predicted {(worst.Item1 > 0 ? "faster" : "slower")} than measured): ");
                text += worst.Item1 > 0
                    ? c.LayerRates.Count > 0
                        ? "the GEMM and convolution rates were measured on isolated calls (warm caches, one algorithm choice), and layers outside those tables (grouped convolutions, data movement, unfused chains) are priced at the bandwidth roofline, which small or layout-changing kernels do not reach. Trust the measured curve and use the prediction only for where the time goes."
                        : "the roofline assumes every layer runs at the device's best GEMM rate or bandwidth, which small, oddly shaped or memory-layout-changing layers do not reach; on a shared CPU other processes also take cycles. Trust the measured curve and use the prediction only for where the time goes."
                    : "this engine does better than the ceilings suggest — caches hold the activations of small layers, so bytes rarely go to DRAM, and fused operators skip the per-op cost. Trust the measured curve.";
            }
            else
            {
                text += F($" Within {PredictionError.Tolerance:P0}: the roofline account above is a fair explanation of this curve.");
            }

            lines.Add(text);
        }

        return lines;
    }

    /// <summary>
    /// Which layers were priced from the measured per-class rate tables, which fell back to the GEMM curve and why (on
    /// devices that measured tables: a GPU); null where none were measured.
    /// </summary>
    private static string? RatesLine(DeviceCeilings c, BatchPrediction p)
    {
        if (c.LayerRates.Count == 0)
        {
            return null;
        }

        var gemmLike = p.Layers.Where(l => l.Work.Kind is LayerKind.MatMul or LayerKind.Convolution or LayerKind.PointwiseConvolution or LayerKind.StridedConvolution or LayerKind.StridedPointwiseConvolution).ToList();
        var priced = gemmLike.Where(l => c.MeasuredRate(l.Work) is not null).ToList();
        var grouped = p.Layers.Where(l => l.Work.IsGroupedConvolution).ToList();
        var groupedPriced = grouped.Count(l => c.MeasuredRate(l.Work) is not null);
        var flops = Math.Max(1, gemmLike.Sum(l => l.Work.Flops));
        var text = F($"Per-layer rates: {priced.Count} of {gemmLike.Count} GEMM and convolution layers ({priced.Sum(l => l.Work.Flops) / flops:P0} of their FLOPs) priced from the {c.Precision} cuBLASLt/cuDNN rates measured per call in a CUDA graph at their own channels, K and N");
        if (priced.Count < gemmLike.Count)
        {
            text += F($"; {gemmLike.Count - priced.Count} from the GEMM rate curve ({(c.Details.TryGetValue("layer_rates_missing", out var why) ? why : $"no {c.Precision} table measured")})");
        }

        if (groupedPriced > 0)
        {
            text += F($"; {groupedPriced} grouped/depthwise convolution{(groupedPriced == 1 ? string.Empty : "s")} from the {c.Precision} grouped and depthwise tables (the routine the engine picks, measured per group width, window and stride)");
        }

        if (grouped.Count > groupedPriced)
        {
            var n = grouped.Count - groupedPriced;
            text += F($"; {n} grouped/depthwise convolution{(n == 1 ? string.Empty : "s")} at the fp32 CUDA-core rate (no {c.Precision} grouped/depthwise table measured)");
        }

        return text + F($"; every other kernel at least {(c.KernelFloorSeconds ?? c.OpOverheadSeconds) * 1e6:N1} µs (a small kernel in a CUDA graph).");
    }

    /// <summary>
    /// Where the prediction priced a sustained-load clock (<see cref="BatchPrediction.SustainedFactor"/> below 1 at some
    /// batch): from which batch on and by how much; null where every batch kept the full clock's rate.
    /// </summary>
    private static string? SustainedLine(IReadOnlyList<BatchPrediction> predicted)
    {
        var slowed = predicted.Where(p => p.SustainedFactor < 0.995).ToList();
        if (slowed.Count == 0)
        {
            return null;
        }

        var busiest = slowed.MinBy(p => p.SustainedFactor)!;
        return F($"Sustained load: run back to back, this model keeps {busiest.FullClockActivity:P0} of the peak arithmetic busy at b={busiest.BatchSize} at the full clock; the probe's GEMMs held that busy for a second lost clock to the power limit, so the prediction takes {slowed[0].SustainedFactor:P0} of the full clock's compute rate at b={slowed[0].BatchSize}{(slowed.Count > 1 ? F($" down to {busiest.SustainedFactor:P0} at b={busiest.BatchSize}") : string.Empty)}.");
    }

    /// <summary>
    /// Where the measured points report the GPU's clock (bench's device clocks) and it fell by 5% or more between them, or a
    /// power or thermal limit held it in a tenth of a point's samples: which points ran slower and why (against a prediction
    /// at the full clock, or one that priced the sustained clock, <paramref name="sustainedPriced"/>); null otherwise.
    /// </summary>
    private static string? ClockVerdict(IReadOnlyList<MeasuredPoint> measured, bool sustainedPriced)
    {
        var clocked = measured.Where(m => m.Clocks is not null).ToList();
        if (clocked.Count == 0)
        {
            return null;
        }

        var fastest = clocked.MaxBy(m => m.Clocks!.SmClockMhz)!;
        var slowest = clocked.MinBy(m => m.Clocks!.SmClockMhz)!;
        var held = clocked
            .SelectMany(m => m.Clocks!.SlowedBy().Select(limit => (m.BatchSize, Limit: limit)))
            .GroupBy(h => h.Limit)
            .Select(g => F($"the {g.Key} at b={string.Join(", ", g.Select(h => h.BatchSize))}"))
            .ToList();
        if (slowest.Clocks!.SmClockMhz >= 0.95 * fastest.Clocks!.SmClockMhz && held.Count == 0)
        {
            return null;
        }

        var range = slowest == fastest
            ? F($"{slowest.Clocks.SmClockMhz:N0} MHz")
            : F($"{fastest.Clocks.SmClockMhz:N0} MHz at b={fastest.BatchSize} down to {slowest.Clocks.SmClockMhz:N0} MHz at b={slowest.BatchSize}");
        var against = sustainedPriced
            ? "The prediction already takes the compute rate the probe's held GEMMs kept at each batch's activity; a model's own mix of work can hold the clock lower or higher than theirs did."
            : "The ceilings' rates are timed in short bursts at the full clock, so the points measured slower ran on a slower device than the prediction assumes.";
        return F($"The GPU's SM clock while measured: {range}{(held.Count > 0 ? "; held by " + string.Join(" and ", held) : string.Empty)}. {against}");
    }

    /// <summary>
    /// Where int8 pays and where it does not: the whole model against the same model in float (fp16 on a GPU, fp32 on a
    /// CPU) at the smallest and largest batch, the int8 layers that gain most and least (small N, memory-bound,
    /// overhead-bound), the share of quantize and dequantize passes, and whether the measured sweep agrees.
    /// </summary>
    private static List<string> Int8Verdict(Explanation e)
    {
        var c = e.Ceilings;
        var lines = new List<string>();
        var float0 = e.FloatPredicted[0];
        var float1 = e.FloatPredicted[^1];
        var int0 = e.Predicted[0];
        var int1 = e.Predicted[^1];
        double gain0 = int0.Throughput / float0.Throughput, gain1 = int1.Throughput / float1.Throughput;
        var int8Layers = int1.Layers.Count(l => l.Work.IsInt8);
        var ceiling = c.HasInt8
            ? F($"int8 ceiling {c.PeakFlopsInt8!.Value / 1e12:N2} TOP/s against {c.PeakInUse / 1e12:N2} TFLOP/s {c.Precision}")
            : F($"no int8 ceiling was measured on {c.Device} via {c.Engine}, so int8 layers are predicted at the {c.Precision} rate with int8 bytes (explain --recalibrate measures one)");
        static string Pays(double g) => g >= 1.15 ? "int8 pays" : g >= 0.95 ? "int8 gains little" : "int8 does not pay";
        lines.Add(F($"Int8 ({int8Layers} layers int8, the rest {c.Precision}; {ceiling}): predicted {gain0:N2}x the {c.Precision} model at b={int0.BatchSize} ({Pays(gain0)}), {gain1:N2}x at b={int1.BatchSize} ({Pays(gain1)})."));

        // Per layer at the largest batch: the int8 layers' time against the same layer in float.
        var floatByName = float1.Layers.GroupBy(l => l.Work.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var compared = int1.Layers.Where(l => l.Work.IsInt8 && l.Work.Flops > 0 && floatByName.ContainsKey(l.Work.Name))
            .Select(l => (Int8: l, Float: floatByName[l.Work.Name], Gain: floatByName[l.Work.Name].Seconds / l.Seconds))
            .GroupBy(x => (x.Int8.Work.OpType, x.Int8.Work.GemmText))
            .Select(g => (g.First().Int8, g.First().Float, g.First().Gain, Count: g.Count(), Seconds: g.Sum(x => x.Float.Seconds)))
            .OrderByDescending(x => x.Seconds)
            .ToList();
        string Label((LayerPrediction Int8, LayerPrediction Float, double Gain, int Count, double Seconds) x) =>
            F($"{x.Int8.Work.Name}{(x.Count > 1 ? F($" (x{x.Count})") : string.Empty)} {x.Int8.Work.OpType} {x.Int8.Work.GemmText} {x.Gain:N1}x");
        var paying = compared.Where(x => x.Gain >= 1.15).Take(3).ToList();
        var notPaying = compared.Where(x => x.Gain < 1.15).Take(3).ToList();
        if (paying.Count > 0)
        {
            lines.Add(F($"Where int8 pays at b={int1.BatchSize} (int8 time against the layer in {c.Precision}): {string.Join("; ", paying.Select(Label))}."));
        }

        if (notPaying.Count > 0)
        {
            string Why(LayerPrediction l) => l.Bound switch
            {
                Bound.Memory => "memory-bound",
                Bound.Launch => "per-op overhead",
                _ => l.Efficiency < 0.5 ? F($"small N: {l.Efficiency:P0} of the int8 rate") : "the int8 rate is no better here",
            };
            lines.Add(F($"Where it does not: {string.Join("; ", notPaying.Select(x => Label(x) + " (" + Why(x.Int8) + ")"))}."));
        }

        var passes = int1.Layers.Where(l => l.Work.Role == QuantizedRole.QuantizePass).ToList();
        if (passes.Count > 0)
        {
            lines.Add(F($"Quantize and dequantize passes between float and int8 layers (not fused): {passes.Count} per run, {passes.Sum(l => l.Seconds) / int1.Seconds:P0} of the predicted time at b={int1.BatchSize}."));
        }

        // The check: int8 against the float model, both measured, at the largest batch both have.
        var both = e.Measured.Where(m => e.FloatMeasured.Any(f => f.BatchSize == m.BatchSize)).ToList();
        if (both.Count > 0)
        {
            var m = both[^1];
            var f = e.FloatMeasured.First(x => x.BatchSize == m.BatchSize);
            var predicted = e.Predicted.First(p => p.BatchSize == m.BatchSize).Throughput / e.FloatPredicted.First(p => p.BatchSize == m.BatchSize).Throughput;
            var measuredGain = m.Throughput / f.Throughput;
            var agrees = Pays(predicted) == Pays(measuredGain);
            lines.Add(F($"Measured at b={m.BatchSize}: int8 {Units.Rate(m.Throughput)}/s against {c.Precision} {Units.Rate(f.Throughput)}/s, {measuredGain:N2}x (predicted {predicted:N2}x): the measurement {(agrees ? "confirms" : "contradicts")} that {Pays(predicted)} here{(agrees ? string.Empty : F($" ({Pays(measuredGain)} measured)"))}."));
        }
        else if (e.Measured.Count > 0)
        {
            lines.Add(F($"No {c.Precision} sweep to check the int8 gain against (the model is stored quantized, or the points came from a bench file): bench the float model at --precision {c.Precision} to confirm it."));
        }

        return lines;
    }

    /// <summary>
    /// The layers' work at a batch size as the device moves it: in fp16 every float tensor is half the graph's fp32 bytes
    /// (int8 layers keep their int8 bytes), and each float32 graph input and output is converted by a kernel of its own
    /// (4 bytes read and 2 written per element on the way in, the reverse on the way out) — but a classifier's logits at
    /// batch 1, which the engine's small-row kernel writes in float32 itself (<see cref="BoundaryTensor.OneRowProductAtBatchOne"/>:
    /// the row stays, at no cost, so every batch has the same layers).
    /// </summary>
    private static Func<int, IReadOnlyList<LayerWork>> LayersAt(ModelWork work, DeviceCeilings ceilings) => ceilings.Precision == "fp16"
        ? b => [
            .. work.FloatBoundaries.Where(t => t.IsInput).Select(t => Conversion(t, b)),
            .. work.At(b, channelsLast: true).Select(l => l.IsInt8 ? l : l with { Bytes = l.Bytes / 2 }),
            .. work.FloatBoundaries.Where(t => !t.IsInput).Select(t => b == 1 && t.OneRowProductAtBatchOne ? Conversion(t, b) with { Bytes = 0, LaunchesKernel = false } : Conversion(t, b)),
        ]
        : work.At;

    private static LayerWork Conversion(BoundaryTensor t, int batchSize) =>
        new(F($"{(t.IsInput ? "input" : "output")} {t.Name} to {(t.IsInput ? "fp16" : "fp32")}"), "Cast", 0, 6 * t.ElementsPerSample * batchSize);

    private static string Shares(BatchPrediction p)
    {
        var total = p.Seconds;
        return F($"{p.SecondsBoundBy(Bound.Compute) / total:P0} compute-bound, {p.SecondsBoundBy(Bound.Memory) / total:P0} memory-bound, {p.SecondsBoundBy(Bound.Launch) / total:P0} overhead");
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
