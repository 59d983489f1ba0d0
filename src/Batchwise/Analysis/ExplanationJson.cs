using System.Globalization;
using System.Text.Json.Serialization;
using Batchwise.Reports;

namespace Batchwise.Analysis;

/// <summary>An <see cref="Explanation"/> as JSON in a documented, versioned schema (docs/explain.md): the <see cref="ExplainDocument"/> record.</summary>
public static class ExplanationJson
{
    /// <summary>The schema's name.</summary>
    public const string SchemaName = ExplainDocument.SchemaName;

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    public const int SchemaVersion = ExplainDocument.CurrentVersion;

    /// <summary>The JSON document as a string.</summary>
    public static string ToJson(Explanation e, IReadOnlyDictionary<string, string> context) => ReportJson.Serialize(ExplainDocument.From(e, context));

    /// <summary>Writes the JSON document to a file.</summary>
    public static void Write(string path, Explanation e, IReadOnlyDictionary<string, string> context) => ReportFile.WriteText(path, ToJson(e, context));
}

/// <summary>`batchwise explain --json`: schema batchwise.explain (fields in docs/explain.md).</summary>
/// <param name="Model">Model name.</param>
/// <param name="Input">Input shapes at batch 1.</param>
/// <param name="FlopsPerSample">FLOPs per sample.</param>
/// <param name="Context">Model, engine, device, machine, date.</param>
/// <param name="LoadAverage">Host load after the sweep, or null.</param>
/// <param name="Ceilings">The device's ceilings used.</param>
/// <param name="Predicted">The predicted curve.</param>
/// <param name="Measured">The measured curve.</param>
/// <param name="Knee">Both knees.</param>
/// <param name="Error">The prediction's error, where measured.</param>
/// <param name="TopLayers">The costliest layers.</param>
/// <param name="Verdict">In words.</param>
/// <param name="FloatPredicted">For a model with int8 layers: the same model predicted in float (left out otherwise).</param>
/// <param name="FloatMeasured">For a float model explained in int8: the float model measured (left out otherwise).</param>
/// <param name="LayersAtLast">Every layer's predicted time at the largest batch, in plan order (to set beside `bench --profile`'s per-layer times).</param>
public sealed record ExplainDocument(
    string Model,
    string Input,
    double FlopsPerSample,
    IReadOnlyDictionary<string, string> Context,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? LoadAverage,
    ExplainCeilings Ceilings,
    IReadOnlyList<ExplainPredicted> Predicted,
    IReadOnlyList<ExplainMeasured> Measured,
    ExplainKnee Knee,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ExplainError? Error,
    IReadOnlyList<ExplainLayer> TopLayers,
    IReadOnlyList<string> Verdict,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ExplainPredicted>? FloatPredicted = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ExplainMeasured>? FloatMeasured = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ExplainLayerTime>? LayersAtLast = null) : VersionedDocument(SchemaName, CurrentVersion)
{
    /// <summary>The schema's name.</summary>
    public const string SchemaName = "batchwise.explain";

    /// <summary>The schema's version this Batchwise writes.</summary>
    public const int CurrentVersion = 1;

    /// <summary>The document of an explanation.</summary>
    public static ExplainDocument From(Explanation e, IReadOnlyDictionary<string, string> context)
    {
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(context);
        var c = e.Ceilings;
        static double? Finite(double v) => double.IsFinite(v) ? v : null;
        static ExplainPredicted Predicted(BatchPrediction p) => new(p.BatchSize, p.Throughput, p.Seconds, p.SecondsBoundBy(Bound.Compute) / p.Seconds, p.SecondsBoundBy(Bound.Memory) / p.Seconds, p.SecondsBoundBy(Bound.Launch) / p.Seconds)
        {
            SustainedFactor = p.SustainedFactor < 1 ? p.SustainedFactor : null,
        };
        static ExplainMeasured Measured(MeasuredPoint m) => new(m.BatchSize, m.Throughput, m.LatencyMedianSeconds, m.LatencyP90Seconds, Finite(m.LatencyMinSeconds), m.Runs) { DeviceClocks = m.Clocks };
        return new ExplainDocument(
            e.ModelName,
            e.Input,
            e.FlopsPerSample,
            context,
            e.LoadAverage,
            new ExplainCeilings(
                c.Engine, c.Device, c.Machine, c.PeakFlops, c.PeakConvFlops, c.PeakFlopsTf32, c.PeakFlopsFp16, c.Precision, c.PeakInUse,
                c.RateCurve.Select(p => new ExplainRatePoint(p.N, p.Flops, c.Efficiency(p.N))).ToList(),
                c.BandwidthBytesPerSecond, c.RunOverheadSeconds, c.OpOverheadSeconds, c.KernelLaunchSeconds, c.Launch.Length > 0 ? c.Launch : null,
                c.SaturationN, c.SaturationSource, c.MeasuredAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture), c.PeakFlopsInt8),
            e.Predicted.Select(Predicted).ToList(),
            e.Measured.Select(Measured).ToList(),
            new ExplainKnee(e.PredictedKnee, e.MeasuredKnee),
            e.Error is { } err ? new ExplainError(err.AtFirst, err.AtLast, Finite(err.BestRunAtFirst), Finite(err.BestRunAtLast), err.PredictedKnee, err.MeasuredKnee, err.IsOff) : null,
            e.TopLayers.Select(r =>
            {
                var l = r.AtFirst.Work;
                return new ExplainLayer(
                    l.Name, l.OpType, r.Alike, l.Flops, l.Bytes, l.Intensity, r.AtLast.Work.Intensity,
                    l.Gemm is { } g ? new ExplainGemm(g.M, g.N, g.K, g.BatchCount) : null,
                    l.Gemm is null ? null : l.ParallelSize,
                    r.SaturationBatch, r.AtFirst.Bound.ToString().ToLowerInvariant(), r.AtLast.Bound.ToString().ToLowerInvariant(), r.ShareAtLast);
            }).ToList(),
            e.Verdict,
            e.FloatPredicted.Count > 0 ? e.FloatPredicted.Select(Predicted).ToList() : null,
            e.FloatMeasured.Count > 0 ? e.FloatMeasured.Select(Measured).ToList() : null,
            e.Predicted.Count > 0 ? [.. e.Predicted[^1].Layers.Select(l => new ExplainLayerTime(
                l.Work.Name, l.Work.OpType, KindName(l.Work.Kind), l.Seconds, l.ComputeSeconds, l.MemorySeconds, l.OverheadSeconds, l.Bound.ToString().ToLowerInvariant()))] : null);
    }

    /// <summary>A layer kind in the JSON's snake_case: "depthwise_convolution".</summary>
    private static string KindName(LayerKind kind) => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(kind.ToString());
}

/// <summary>The device's ceilings as explain used them.</summary>
/// <param name="Engine">Engine measured through.</param>
/// <param name="Device">Device.</param>
/// <param name="Machine">Host.</param>
/// <param name="PeakFlops">fp32 GEMM FLOP/s.</param>
/// <param name="PeakConvFlops">Convolution FLOP/s, where measured.</param>
/// <param name="PeakFlopsTf32">TF32 GEMM FLOP/s, where measured.</param>
/// <param name="PeakFlopsFp16">fp16 GEMM FLOP/s, where measured.</param>
/// <param name="Precision">The precision predicted in.</param>
/// <param name="PeakFlopsInUse">The peak of that precision.</param>
/// <param name="RateCurve">Rate by GEMM N, with the efficiency the prediction uses.</param>
/// <param name="BandwidthBytesPerS">Memory bandwidth.</param>
/// <param name="RunOverheadS">Fixed cost per run.</param>
/// <param name="OpOverheadS">Cost per operator.</param>
/// <param name="KernelLaunchS">Cost of a kernel launch, where measured.</param>
/// <param name="Launch">"cuda graph" or "stream" (GPU only).</param>
/// <param name="SaturationN">GEMM N at which the device fills.</param>
/// <param name="SaturationSource">Where that came from.</param>
/// <param name="MeasuredAt">When measured (UTC).</param>
/// <param name="PeakFlopsInt8">int8 GEMM operations/s, where measured (left out where not).</param>
public sealed record ExplainCeilings(
    string Engine,
    string Device,
    string Machine,
    double PeakFlops,
    double? PeakConvFlops,
    double? PeakFlopsTf32,
    double? PeakFlopsFp16,
    string Precision,
    double PeakFlopsInUse,
    IReadOnlyList<ExplainRatePoint> RateCurve,
    double BandwidthBytesPerS,
    double RunOverheadS,
    double OpOverheadS,
    double? KernelLaunchS,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Launch,
    double SaturationN,
    string SaturationSource,
    string MeasuredAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? PeakFlopsInt8 = null);

/// <summary>One point of the rate curve.</summary>
/// <param name="N">GEMM N.</param>
/// <param name="Flops">FLOP/s measured.</param>
/// <param name="Efficiency">Share of the best rate.</param>
public sealed record ExplainRatePoint(double N, double Flops, double Efficiency);

/// <summary>A predicted batch size.</summary>
/// <param name="BatchSize">Batch size.</param>
/// <param name="ThroughputSamplesPerS">Predicted samples/s.</param>
/// <param name="LatencyS">Predicted run time.</param>
/// <param name="ComputeShare">Share of time in compute-bound layers.</param>
/// <param name="MemoryShare">Share in memory-bound layers.</param>
/// <param name="OverheadShare">Share in launch and run overhead.</param>
public sealed record ExplainPredicted(int BatchSize, double ThroughputSamplesPerS, double LatencyS, double ComputeShare, double MemoryShare, double OverheadShare)
{
    /// <summary>The share of the full clock's compute rate priced for sustained load (the GPU's power limit), where below 1; null at the full clock.</summary>
    public double? SustainedFactor { get; init; }
}

/// <summary>A measured batch size.</summary>
/// <param name="BatchSize">Batch size.</param>
/// <param name="ThroughputSamplesPerS">Measured samples/s.</param>
/// <param name="LatencyP50S">Median run time.</param>
/// <param name="LatencyP90S">90th percentile.</param>
/// <param name="LatencyMinS">Fastest run, where known.</param>
/// <param name="Runs">Runs measured.</param>
public sealed record ExplainMeasured(int BatchSize, double ThroughputSamplesPerS, double LatencyP50S, double LatencyP90S, double? LatencyMinS, int Runs)
{
    /// <summary>A GPU's mean SM clock and power while it was measured and what held its clocks back (bench's device_clocks), where known.</summary>
    public Benchmarking.DeviceClocks? DeviceClocks { get; init; }
}

/// <summary>Both knees.</summary>
/// <param name="PredictedBatchSize">Of the prediction.</param>
/// <param name="MeasuredBatchSize">Of the measurement, or null.</param>
public sealed record ExplainKnee(int PredictedBatchSize, int? MeasuredBatchSize);

/// <summary>How far the prediction is from the measurement.</summary>
/// <param name="ThroughputAtFirst">(predicted - measured) / measured at the smallest batch.</param>
/// <param name="ThroughputAtLast">The same at the largest.</param>
/// <param name="BestRunAtFirst">Against the fastest run at the smallest batch.</param>
/// <param name="BestRunAtLast">Against the fastest run at the largest batch.</param>
/// <param name="PredictedKnee">Predicted knee.</param>
/// <param name="MeasuredKnee">Measured knee.</param>
/// <param name="Off">An error beyond 30%.</param>
public sealed record ExplainError(double ThroughputAtFirst, double ThroughputAtLast, double? BestRunAtFirst, double? BestRunAtLast, int PredictedKnee, int MeasuredKnee, bool Off);

/// <summary>One costly layer.</summary>
/// <param name="Name">Layer name.</param>
/// <param name="Op">Operator.</param>
/// <param name="Alike">Layers of the same shape and cost it stands for.</param>
/// <param name="FlopsAtFirst">FLOPs at the smallest batch.</param>
/// <param name="BytesAtFirst">Bytes at the smallest batch.</param>
/// <param name="IntensityAtFirst">FLOP/B at the smallest batch.</param>
/// <param name="IntensityAtLast">FLOP/B at the largest batch.</param>
/// <param name="GemmAtFirst">Its GEMM's M/N/K at the smallest batch, for GEMM layers.</param>
/// <param name="ParallelSizeAtFirst">Its GEMM's parallel size, for GEMM layers.</param>
/// <param name="SaturationBatch">Batch at which it fills the device.</param>
/// <param name="BoundAtFirst">compute, memory or launch at the smallest batch.</param>
/// <param name="BoundAtLast">The same at the largest.</param>
/// <param name="ShareAtLast">Share of the run's time at the largest batch.</param>
public sealed record ExplainLayer(
    string Name,
    string Op,
    int Alike,
    double FlopsAtFirst,
    double BytesAtFirst,
    double IntensityAtFirst,
    double IntensityAtLast,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ExplainGemm? GemmAtFirst,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? ParallelSizeAtFirst,
    int? SaturationBatch,
    string BoundAtFirst,
    string BoundAtLast,
    double ShareAtLast);

/// <summary>A GEMM's sizes.</summary>
/// <param name="M">Rows.</param>
/// <param name="N">Columns.</param>
/// <param name="K">Inner dimension.</param>
/// <param name="BatchCount">Independent GEMMs.</param>
public sealed record ExplainGemm(long M, long N, long K, long BatchCount);

/// <summary>One layer's predicted time at one batch.</summary>
/// <param name="Name">Layer (node) name; a float32 input or output conversion in fp16 is named "input NAME to fp16" / "output NAME to fp32".</param>
/// <param name="Op">Operator.</param>
/// <param name="Kind">Which rate table prices it: other, mat_mul, convolution, pointwise_convolution, strided_convolution, strided_pointwise_convolution, grouped_convolution, strided_grouped_convolution, depthwise_convolution, strided_depthwise_convolution.</param>
/// <param name="Seconds">max(compute, memory) + overhead.</param>
/// <param name="ComputeS">FLOPs over its rate.</param>
/// <param name="MemoryS">Bytes over the bandwidth.</param>
/// <param name="OverheadS">Launch or kernel-floor cost.</param>
/// <param name="Bound">compute, memory or launch.</param>
public sealed record ExplainLayerTime(string Name, string Op, string Kind, double Seconds, double ComputeS, double MemoryS, double OverheadS, string Bound);
