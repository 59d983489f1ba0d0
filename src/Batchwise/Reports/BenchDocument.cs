using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Reports;

/// <summary>`batchwise bench --json`: schema batchwise.bench, fields in docs/bench-schema.md; explain and report read it back.</summary>
/// <param name="DateUtc">When the sweep started (UTC, ISO 8601 with milliseconds).</param>
/// <param name="BatchwiseVersion">Batchwise's version.</param>
/// <param name="Machine">The host.</param>
/// <param name="Engine">The engine, its own description and the options it ran with.</param>
/// <param name="Model">The model.</param>
/// <param name="Options">The sweep's options.</param>
/// <param name="Points">Every measured point, in measurement order.</param>
/// <param name="Knees">One knee per concurrency.</param>
/// <param name="Notes">Plain-words notes.</param>
/// <param name="StopReason">Why the sweep ended.</param>
/// <param name="TotalSeconds">Wall time of the whole sweep.</param>
public sealed record BenchDocument(
    string DateUtc,
    string BatchwiseVersion,
    BenchMachine Machine,
    BenchEngine Engine,
    BenchModel Model,
    BenchSweepOptions Options,
    IReadOnlyList<BenchPointRecord> Points,
    IReadOnlyList<BenchKnee> Knees,
    IReadOnlyList<string> Notes,
    StopReason StopReason,
    double TotalSeconds) : VersionedDocument(SchemaName, CurrentVersion)
{
    /// <summary>Time to first inference, measured before the sweep (absent where not measured).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ColdStart? ColdStart { get; init; }

    /// <summary>The schema's name.</summary>
    public const string SchemaName = "batchwise.bench";

    /// <summary>The schema's version this Batchwise writes (and the newest it reads).</summary>
    public const int CurrentVersion = 1;

    /// <summary>The document of a sweep.</summary>
    public static BenchDocument From(BenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var c = result.Context;
        var o = c.EngineOptions;
        var m = c.Model;
        var s = c.Options;
        return new BenchDocument(
            c.DateUtc.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture),
            c.BatchwiseVersion,
            new BenchMachine(c.MachineName, c.Cpu, c.LogicalCores, c.OperatingSystem, c.Runtime),
            new BenchEngine(c.Engine.Engine, c.Engine.Version, c.Engine.Device, new SortedDictionary<string, string>(c.Engine.Details.ToDictionary(), StringComparer.Ordinal), new BenchEngineOptions(
                o.Precision.ToString().ToLowerInvariant(), o.IntraOpThreads, o.InterOpThreads, o.GraphOptimization, o.ExecutionProvider, o.DeviceId, o.AllowTf32, o.UseCudaGraph, o.Profile, o.IncludeTransfers, o.BatchProfiles, o.ExactPlans)),
            new BenchModel(m.Name, m.Source, m.Sha256, m.BatchAxis.IsBatchable, m.BatchAxis.IsBatchable ? m.BatchAxis.Symbol : null, m.BatchAxis.IsBatchable ? null : m.BatchAxis.Reason,
                m.Inputs.Select(i => new BenchModelInput(i.Name, i.ElementType.ShortName(), i.Shape, m.InputData.TryGetValue(i.Name, out var data) ? data : "unknown")).ToList()),
            new BenchSweepOptions(s.PlannedBatchSizes(), s.BatchSizes is null, s.MaxBatchSize, s.Concurrency, s.Duration.TotalSeconds, s.Window.TotalSeconds, s.Warmup.TotalSeconds, s.MaxTime?.TotalSeconds, s.Seed, s.StabilityTolerance, s.MaxWindows, s.Shapes.Text, s.Queue),
            result.Points.Select(p => new BenchPointRecord(
                p.BatchSize, p.Concurrency, p.InputShapes, p.Stable, p.Spread, p.WindowThroughputs, p.Throughput, p.BatchesPerSecond, p.TimePerSampleMs, p.LatencyMs,
                p.CpuUtilization, p.PeakWorkingSetBytes, p.DeviceUtilizationPercent, p.DeviceMemoryUsedBytes,
                p.Transfers is { } t ? new BenchTransfers(t.HostToDeviceMs, t.ComputeMs, t.DeviceToHostMs) : null,
                p.WarmupRuns, p.MeasuredSeconds, p.PaddedTo, p.PlanBuilds, p.LatencySamplesMs.Select(x => Math.Round(x, 6)).ToList())
            {
                DeviceClocks = p.DeviceClocks,
            }).ToList(),
            result.Knees.Select(k => new BenchKnee(k.Concurrency, k.KneeBatchSize, k.BestBatchSize, k.BestThroughput, k.BaselineBatchSize, k.SpeedupAtKnee, k.GainBeyondKnee,
                k.Steps.Select(x => new BenchKneeStep(x.FromBatchSize, x.ToBatchSize, x.Gain)).ToList(), k.Verdict)).ToList(),
            result.Notes,
            result.StopReason,
            result.TotalSeconds)
        {
            ColdStart = result.ColdStart,
        };
    }
}

/// <summary>The host of a sweep.</summary>
/// <param name="Name">Host name.</param>
/// <param name="Cpu">CPU model.</param>
/// <param name="LogicalCores">Logical processors.</param>
/// <param name="Os">Operating system.</param>
/// <param name="Runtime">.NET runtime.</param>
public sealed record BenchMachine(string Name, string Cpu, int LogicalCores, string Os, string Runtime);

/// <summary>The engine of a sweep.</summary>
/// <param name="Name">Engine name.</param>
/// <param name="Version">Engine library version(s).</param>
/// <param name="Device">Device name.</param>
/// <param name="Details">The engine's own details (string values, sorted by key).</param>
/// <param name="Options">The options it was loaded with.</param>
public sealed record BenchEngine(string Name, string Version, string Device, IReadOnlyDictionary<string, string> Details, BenchEngineOptions Options);

/// <summary>Engine options as a sweep records them.</summary>
/// <param name="Precision">fp32 or fp16.</param>
/// <param name="IntraOpThreads">--threads.</param>
/// <param name="InterOpThreads">--inter-op-threads.</param>
/// <param name="GraphOptimization">--graph-optimization.</param>
/// <param name="ExecutionProvider">--ep.</param>
/// <param name="DeviceId">--device.</param>
/// <param name="AllowTf32">--tf32.</param>
/// <param name="CudaGraph">Not --no-cuda-graph.</param>
/// <param name="Profile">--profile.</param>
/// <param name="IncludeTransfers">--transfers.</param>
/// <param name="BatchProfiles">--batch-profile (empty: a plan per batch size).</param>
/// <param name="ExactPlans">--exact-plans: padded batches got their own plans in the background (so a padded point may have run partly unpadded).</param>
public sealed record BenchEngineOptions(string Precision, int IntraOpThreads, int InterOpThreads, string GraphOptimization, string ExecutionProvider, int DeviceId, bool AllowTf32, bool CudaGraph, bool Profile, bool IncludeTransfers, IReadOnlyList<int> BatchProfiles, bool ExactPlans = false);

/// <summary>The model of a sweep.</summary>
/// <param name="Name">Short name.</param>
/// <param name="Source">As given.</param>
/// <param name="Sha256">Of the file, or of the serialized model.</param>
/// <param name="Batchable">Whether it has a dynamic batch axis.</param>
/// <param name="BatchSymbol">The batch axis' symbol, when batchable.</param>
/// <param name="NotBatchableReason">Why not, when not.</param>
/// <param name="Inputs">Declared inputs and how each was filled.</param>
public sealed record BenchModel(
    string Name,
    string Source,
    string Sha256,
    bool Batchable,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? BatchSymbol,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? NotBatchableReason,
    IReadOnlyList<BenchModelInput> Inputs);

/// <summary>A declared input.</summary>
/// <param name="Name">Input name.</param>
/// <param name="ElementType">float32, int64, ...</param>
/// <param name="Shape">Each dimension: a number, or its symbol.</param>
/// <param name="Data">How it was filled.</param>
public sealed record BenchModelInput(string Name, string ElementType, [property: JsonConverter(typeof(DimListConverter))] IReadOnlyList<Dim> Shape, string Data);

/// <summary>A sweep's options.</summary>
/// <param name="BatchSizes">The batch sizes planned.</param>
/// <param name="BatchSizesDefault">Whether they are the default sweep.</param>
/// <param name="MaxBatchSize">The end of the default sweep.</param>
/// <param name="Concurrency">Concurrency levels.</param>
/// <param name="DurationS">Measurement time per point.</param>
/// <param name="WindowS">One window.</param>
/// <param name="WarmupS">Warm-up per point.</param>
/// <param name="MaxTimeS">The sweep's time budget, or null.</param>
/// <param name="Seed">Seed of the random inputs.</param>
/// <param name="StabilityTolerance">Stability tolerance (a fraction).</param>
/// <param name="MaxWindows">Windows at most per point.</param>
/// <param name="Shapes">--shape bindings as given.</param>
/// <param name="Queue">Runs each worker enqueued back to back before waiting (--queue; 1: every run waited for; absent in documents written before it, read as 1).</param>
public sealed record BenchSweepOptions(IReadOnlyList<int> BatchSizes, bool BatchSizesDefault, int MaxBatchSize, IReadOnlyList<int> Concurrency, double DurationS, double WindowS, double WarmupS, double? MaxTimeS, int Seed, double StabilityTolerance, int MaxWindows, IReadOnlyList<string> Shapes, int Queue = 1);

/// <summary>One measured point (docs/bench-schema.md).</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="Concurrency">Runs in flight.</param>
/// <param name="InputShapes">Concrete input shapes.</param>
/// <param name="Stable">Whether the last three windows agreed.</param>
/// <param name="Spread">Their spread.</param>
/// <param name="WindowThroughputs">Every window's samples/s.</param>
/// <param name="ThroughputSamplesPerS">Samples/s over the last three windows.</param>
/// <param name="BatchesPerS">Runs/s.</param>
/// <param name="TimePerSampleMs">Wall time per sample.</param>
/// <param name="LatencyMs">Batch latency statistics, ms.</param>
/// <param name="CpuUtilization">Process CPU share.</param>
/// <param name="PeakWorkingSetBytes">Largest working set.</param>
/// <param name="DeviceUtilizationPercent">Device utilisation, where reported.</param>
/// <param name="DeviceMemoryUsedBytes">Device memory, where reported.</param>
/// <param name="TransfersMs">With --transfers: the latency's phases.</param>
/// <param name="WarmupRuns">Warm-up runs.</param>
/// <param name="MeasuredSeconds">Wall time of the last three windows.</param>
/// <param name="PaddedTo">The batch profile it ran padded to, or null.</param>
/// <param name="PlanBuilds">Plans the engine built to run it.</param>
/// <param name="LatencySamplesMs">Every batch latency of the last three windows, ms.</param>
public sealed record BenchPointRecord(
    int BatchSize,
    int Concurrency,
    IReadOnlyList<long[]> InputShapes,
    bool Stable,
    double Spread,
    IReadOnlyList<double> WindowThroughputs,
    double ThroughputSamplesPerS,
    double BatchesPerS,
    double TimePerSampleMs,
    LatencyPercentiles LatencyMs,
    double CpuUtilization,
    long PeakWorkingSetBytes,
    double? DeviceUtilizationPercent,
    long? DeviceMemoryUsedBytes,
    BenchTransfers? TransfersMs,
    int WarmupRuns,
    double MeasuredSeconds,
    int? PaddedTo,
    IReadOnlyList<PlanBuild> PlanBuilds,
    IReadOnlyList<double> LatencySamplesMs)
{
    /// <summary>A GPU's mean SM clock and power over the measurement and what held its clocks back, where reported; null otherwise.</summary>
    public DeviceClocks? DeviceClocks { get; init; }
}

/// <summary>A batch's phases with --transfers, ms.</summary>
/// <param name="H2d">Inputs to the device.</param>
/// <param name="Compute">The model.</param>
/// <param name="D2h">Outputs back.</param>
public sealed record BenchTransfers(LatencyPercentiles H2d, LatencyPercentiles Compute, LatencyPercentiles D2h);

/// <summary>The knee of one concurrency level.</summary>
/// <param name="Concurrency">The level.</param>
/// <param name="KneeBatchSize">Smallest batch within 90% of the best.</param>
/// <param name="BestBatchSize">The best batch.</param>
/// <param name="BestThroughputSamplesPerS">Its throughput.</param>
/// <param name="BaselineBatchSize">The smallest batch measured.</param>
/// <param name="SpeedupAtKnee">Knee throughput over the baseline's.</param>
/// <param name="GainBeyondKnee">Best over knee, minus 1.</param>
/// <param name="Steps">Each measured step.</param>
/// <param name="Verdict">In words.</param>
public sealed record BenchKnee(int Concurrency, int KneeBatchSize, int BestBatchSize, double BestThroughputSamplesPerS, int BaselineBatchSize, double SpeedupAtKnee, double GainBeyondKnee, IReadOnlyList<BenchKneeStep> Steps, string Verdict);

/// <summary>One step of the curve.</summary>
/// <param name="FromBatchSize">From.</param>
/// <param name="ToBatchSize">To.</param>
/// <param name="Gain">Throughput gain.</param>
public sealed record BenchKneeStep(int FromBatchSize, int ToBatchSize, double Gain);

/// <summary>A shape as JSON: each dimension a number, or its symbol as a string.</summary>
public sealed class DimListConverter : JsonConverter<IReadOnlyList<Dim>>
{
    /// <inheritdoc/>
    public override IReadOnlyList<Dim> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw new JsonException("a shape is an array of numbers and symbols");
        }

        var dims = new List<Dim>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            dims.Add(reader.TokenType == JsonTokenType.Number ? Dim.Fixed(reader.GetInt64()) : Dim.Symbolic(reader.GetString() ?? string.Empty));
        }

        return dims;
    }

    /// <inheritdoc/>
    public override void Write(Utf8JsonWriter writer, IReadOnlyList<Dim> value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(value);
        writer.WriteStartArray();
        foreach (var d in value)
        {
            if (d.Value is { } v)
            {
                writer.WriteNumberValue(v);
            }
            else
            {
                writer.WriteStringValue(d.ToString());
            }
        }

        writer.WriteEndArray();
    }
}
