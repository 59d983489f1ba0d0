using System.Globalization;
using System.Text;
using System.Text.Json;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Reports;

/// <summary>Writes a sweep as JSON in the documented, versioned schema (docs/bench-schema.md).</summary>
public static class BenchmarkJson
{
    /// <summary>The schema's name.</summary>
    public const string SchemaName = "batchwise.bench";

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    public const int SchemaVersion = 1;

    /// <summary>Writes the JSON document to a file.</summary>
    public static void Write(BenchmarkResult result, string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        ReportFile.Write(path, stream => Write(result, stream));
    }

    /// <summary>The JSON document as a string.</summary>
    public static string ToJson(BenchmarkResult result)
    {
        using var stream = new MemoryStream();
        Write(result, stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Writes the JSON document to a stream.</summary>
    public static void Write(BenchmarkResult result, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(result);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        var c = result.Context;
        w.WriteStartObject();
        w.WriteString("schema", SchemaName);
        w.WriteNumber("schema_version", SchemaVersion);
        w.WriteString("date_utc", c.DateUtc.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
        w.WriteString("batchwise_version", c.BatchwiseVersion);

        w.WriteStartObject("machine");
        w.WriteString("name", c.MachineName);
        w.WriteString("cpu", c.Cpu);
        w.WriteNumber("logical_cores", c.LogicalCores);
        w.WriteString("os", c.OperatingSystem);
        w.WriteString("runtime", c.Runtime);
        w.WriteEndObject();

        WriteEngine(w, c.Engine, c.EngineOptions);
        WriteModel(w, c.Model);
        WriteOptions(w, c.Options);

        w.WriteStartArray("points");
        foreach (var p in result.Points)
        {
            WritePoint(w, p);
        }

        w.WriteEndArray();

        w.WriteStartArray("knees");
        foreach (var k in result.Knees)
        {
            w.WriteStartObject();
            w.WriteNumber("concurrency", k.Concurrency);
            w.WriteNumber("knee_batch_size", k.KneeBatchSize);
            w.WriteNumber("best_batch_size", k.BestBatchSize);
            w.WriteNumber("best_throughput_samples_per_s", k.BestThroughput);
            w.WriteNumber("baseline_batch_size", k.BaselineBatchSize);
            w.WriteNumber("speedup_at_knee", k.SpeedupAtKnee);
            w.WriteNumber("gain_beyond_knee", k.GainBeyondKnee);
            w.WriteStartArray("steps");
            foreach (var s in k.Steps)
            {
                w.WriteStartObject();
                w.WriteNumber("from_batch_size", s.FromBatchSize);
                w.WriteNumber("to_batch_size", s.ToBatchSize);
                w.WriteNumber("gain", s.Gain);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteString("verdict", k.Verdict);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("notes");
        foreach (var n in result.Notes)
        {
            w.WriteStringValue(n);
        }

        w.WriteEndArray();
        w.WriteString("stop_reason", Snake(result.StopReason.ToString()));
        w.WriteNumber("total_seconds", result.TotalSeconds);
        if (result.ColdStart is { } cold)
        {
            w.WriteStartObject("cold_start");
            w.WriteNumber("load_seconds", cold.LoadSeconds);
            w.WriteNumber("first_inference_seconds", cold.FirstInferenceSeconds);
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    private static void WriteEngine(Utf8JsonWriter w, EngineDescription e, EngineOptions o)
    {
        w.WriteStartObject("engine");
        w.WriteString("name", e.Engine);
        w.WriteString("version", e.Version);
        w.WriteString("device", e.Device);
        w.WriteStartObject("details");
        foreach (var (k, v) in e.Details.OrderBy(d => d.Key, StringComparer.Ordinal))
        {
            w.WriteString(k, v);
        }

        w.WriteEndObject();
        w.WriteStartObject("options");
        w.WriteString("precision", o.Precision.ToString().ToLowerInvariant());
        w.WriteNumber("intra_op_threads", o.IntraOpThreads);
        w.WriteNumber("inter_op_threads", o.InterOpThreads);
        w.WriteString("graph_optimization", o.GraphOptimization);
        w.WriteString("execution_provider", o.ExecutionProvider);
        w.WriteNumber("device_id", o.DeviceId);
        w.WriteBoolean("allow_tf32", o.AllowTf32);
        w.WriteBoolean("cuda_graph", o.UseCudaGraph);
        w.WriteBoolean("profile", o.Profile);
        w.WriteBoolean("include_transfers", o.IncludeTransfers);
        w.WriteStartArray("batch_profiles");
        foreach (var b in o.BatchProfiles)
        {
            w.WriteNumberValue(b);
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteModel(Utf8JsonWriter w, ModelInfo m)
    {
        w.WriteStartObject("model");
        w.WriteString("name", m.Name);
        w.WriteString("source", m.Source);
        w.WriteString("sha256", m.Sha256);
        w.WriteBoolean("batchable", m.BatchAxis.IsBatchable);
        if (m.BatchAxis.IsBatchable)
        {
            w.WriteString("batch_symbol", m.BatchAxis.Symbol);
        }
        else
        {
            w.WriteString("not_batchable_reason", m.BatchAxis.Reason);
        }

        w.WriteStartArray("inputs");
        foreach (var i in m.Inputs)
        {
            w.WriteStartObject();
            w.WriteString("name", i.Name);
            w.WriteString("element_type", i.ElementType.ShortName());
            w.WriteStartArray("shape");
            foreach (var d in i.Shape)
            {
                if (d.Value is { } v)
                {
                    w.WriteNumberValue(v);
                }
                else
                {
                    w.WriteStringValue(d.ToString());
                }
            }

            w.WriteEndArray();
            w.WriteString("data", m.InputData.TryGetValue(i.Name, out var data) ? data : "unknown");
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteOptions(Utf8JsonWriter w, BenchmarkOptions o)
    {
        w.WriteStartObject("options");
        w.WriteStartArray("batch_sizes");
        foreach (var b in o.PlannedBatchSizes())
        {
            w.WriteNumberValue(b);
        }

        w.WriteEndArray();
        w.WriteBoolean("batch_sizes_default", o.BatchSizes is null);
        w.WriteNumber("max_batch_size", o.MaxBatchSize);
        w.WriteStartArray("concurrency");
        foreach (var c in o.Concurrency)
        {
            w.WriteNumberValue(c);
        }

        w.WriteEndArray();
        w.WriteNumber("duration_s", o.Duration.TotalSeconds);
        w.WriteNumber("window_s", o.Window.TotalSeconds);
        w.WriteNumber("warmup_s", o.Warmup.TotalSeconds);
        if (o.MaxTime is { } t)
        {
            w.WriteNumber("max_time_s", t.TotalSeconds);
        }
        else
        {
            w.WriteNull("max_time_s");
        }

        w.WriteNumber("seed", o.Seed);
        w.WriteNumber("stability_tolerance", o.StabilityTolerance);
        w.WriteNumber("max_windows", o.MaxWindows);
        w.WriteStartArray("shapes");
        foreach (var s in o.Shapes.Text)
        {
            w.WriteStringValue(s);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WritePoint(Utf8JsonWriter w, BenchmarkPoint p)
    {
        w.WriteStartObject();
        w.WriteNumber("batch_size", p.BatchSize);
        w.WriteNumber("concurrency", p.Concurrency);
        w.WriteStartArray("input_shapes");
        foreach (var shape in p.InputShapes)
        {
            w.WriteStartArray();
            foreach (var d in shape)
            {
                w.WriteNumberValue(d);
            }

            w.WriteEndArray();
        }

        w.WriteEndArray();
        w.WriteBoolean("stable", p.Stable);
        w.WriteNumber("spread", p.Spread);
        w.WriteStartArray("window_throughputs");
        foreach (var t in p.WindowThroughputs)
        {
            w.WriteNumberValue(t);
        }

        w.WriteEndArray();
        w.WriteNumber("throughput_samples_per_s", p.Throughput);
        w.WriteNumber("batches_per_s", p.BatchesPerSecond);
        w.WriteNumber("time_per_sample_ms", p.TimePerSampleMs);
        WritePercentiles(w, "latency_ms", p.LatencyMs);
        w.WriteNumber("cpu_utilization", p.CpuUtilization);
        w.WriteNumber("peak_working_set_bytes", p.PeakWorkingSetBytes);
        w.WriteNumberOrNull("device_utilization_percent", p.DeviceUtilizationPercent);
        w.WriteNumberOrNull("device_memory_used_bytes", p.DeviceMemoryUsedBytes);
        if (p.Transfers is { } phases)
        {
            w.WriteStartObject("transfers_ms");
            WritePercentiles(w, "h2d", phases.HostToDeviceMs);
            WritePercentiles(w, "compute", phases.ComputeMs);
            WritePercentiles(w, "d2h", phases.DeviceToHostMs);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("transfers_ms");
        }

        w.WriteNumber("warmup_runs", p.WarmupRuns);
        w.WriteNumber("measured_seconds", p.MeasuredSeconds);
        w.WriteNumberOrNull("padded_to", p.PaddedTo);
        w.WriteStartArray("plan_builds");
        foreach (var b in p.PlanBuilds)
        {
            w.WriteStartObject();
            w.WriteString("shapes", b.Shapes);
            w.WriteNumber("seconds", b.Seconds);
            w.WriteNumber("kernels_compiled", b.KernelsCompiled);
            w.WriteNumber("kernels_loaded", b.KernelsLoaded);
            w.WriteNumber("compile_seconds", b.CompileSeconds);
            w.WriteNumber("steps", b.Steps);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("latency_samples_ms");
        foreach (var s in p.LatencySamplesMs)
        {
            w.WriteNumberValue(Math.Round(s, 6));
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WritePercentiles(Utf8JsonWriter w, string name, LatencyPercentiles l)
    {
        w.WriteStartObject(name);
        w.WriteNumber("count", l.Count);
        w.WriteNumber("mean", l.Mean);
        w.WriteNumber("stddev", l.StdDev);
        w.WriteNumber("ci95", l.Ci95);
        w.WriteNumber("min", l.Min);
        w.WriteNumber("p50", l.P50);
        w.WriteNumber("p90", l.P90);
        w.WriteNumber("p95", l.P95);
        w.WriteNumber("p99", l.P99);
        w.WriteNumber("max", l.Max);
        w.WriteEndObject();
    }

    internal static string Snake(string pascal)
    {
        var sb = new StringBuilder();
        foreach (var ch in pascal)
        {
            if (char.IsUpper(ch) && sb.Length > 0)
            {
                sb.Append('_');
            }

            sb.Append(char.ToLowerInvariant(ch));
        }

        return sb.ToString();
    }
}
