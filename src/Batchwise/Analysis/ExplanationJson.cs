using System.Text;
using System.Text.Json;
using Batchwise.Reports;

namespace Batchwise.Analysis;

/// <summary>Writes an <see cref="Explanation"/> as JSON in a documented, versioned schema (docs/explain.md).</summary>
public static class ExplanationJson
{
    /// <summary>The schema's name.</summary>
    public const string SchemaName = "batchwise.explain";

    /// <summary>The schema's version; bumped on any incompatible change.</summary>
    public const int SchemaVersion = 1;

    /// <summary>The JSON document as a string.</summary>
    public static string ToJson(Explanation e, IReadOnlyDictionary<string, string> context)
    {
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(context);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            Write(w, e, context);
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Writes the JSON document to a file.</summary>
    public static void Write(string path, Explanation e, IReadOnlyDictionary<string, string> context)
    {
        try
        {
            File.WriteAllText(path, ToJson(e, context));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot write '{path}': {ex.Message}", "Pass a writable path to --json.", ex);
        }
    }

    private static void Write(Utf8JsonWriter w, Explanation e, IReadOnlyDictionary<string, string> context)
    {
        w.WriteStartObject();
        w.WriteString("schema", SchemaName);
        w.WriteNumber("schema_version", SchemaVersion);
        w.WriteString("model", e.ModelName);
        w.WriteString("input", e.Input);
        w.WriteNumber("flops_per_sample", e.FlopsPerSample);
        w.WriteStartObject("context");
        foreach (var (k, v) in context)
        {
            w.WriteString(k, v);
        }

        w.WriteEndObject();
        if (e.LoadAverage is { } load)
        {
            w.WriteNumber("load_average", load);
        }

        var c = e.Ceilings;
        w.WriteStartObject("ceilings");
        w.WriteString("engine", c.Engine);
        w.WriteString("device", c.Device);
        w.WriteString("machine", c.Machine);
        w.WriteNumber("peak_flops", c.PeakFlops);
        w.WriteNumberOrNull("peak_conv_flops", c.PeakConvFlops);
        w.WriteNumberOrNull("peak_flops_tf32", c.PeakFlopsTf32);
        w.WriteNumberOrNull("peak_flops_fp16", c.PeakFlopsFp16);
        w.WriteString("precision", c.Precision);
        w.WriteNumber("peak_flops_in_use", c.PeakInUse);
        w.WriteStartArray("rate_curve");
        foreach (var p in c.RateCurve)
        {
            w.WriteStartObject();
            w.WriteNumber("n", p.N);
            w.WriteNumber("flops", p.Flops);
            w.WriteNumber("efficiency", c.Efficiency(p.N));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteNumber("bandwidth_bytes_per_s", c.BandwidthBytesPerSecond);
        w.WriteNumber("run_overhead_s", c.RunOverheadSeconds);
        w.WriteNumber("op_overhead_s", c.OpOverheadSeconds);
        w.WriteNumberOrNull("kernel_launch_s", c.KernelLaunchSeconds);
        if (c.Launch.Length > 0)
        {
            w.WriteString("launch", c.Launch);
        }

        w.WriteNumber("saturation_n", c.SaturationN);
        w.WriteString("saturation_source", c.SaturationSource);
        w.WriteString("measured_at", c.MeasuredAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteEndObject();

        w.WriteStartArray("predicted");
        foreach (var p in e.Predicted)
        {
            w.WriteStartObject();
            w.WriteNumber("batch_size", p.BatchSize);
            w.WriteNumber("throughput_samples_per_s", p.Throughput);
            w.WriteNumber("latency_s", p.Seconds);
            w.WriteNumber("compute_share", p.SecondsBoundBy(Bound.Compute) / p.Seconds);
            w.WriteNumber("memory_share", p.SecondsBoundBy(Bound.Memory) / p.Seconds);
            w.WriteNumber("overhead_share", p.SecondsBoundBy(Bound.Launch) / p.Seconds);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("measured");
        foreach (var m in e.Measured)
        {
            w.WriteStartObject();
            w.WriteNumber("batch_size", m.BatchSize);
            w.WriteNumber("throughput_samples_per_s", m.Throughput);
            w.WriteNumber("latency_p50_s", m.LatencyMedianSeconds);
            w.WriteNumber("latency_p90_s", m.LatencyP90Seconds);
            w.WriteNumberOrNull("latency_min_s", double.IsFinite(m.LatencyMinSeconds) ? m.LatencyMinSeconds : null);
            w.WriteNumber("runs", m.Runs);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartObject("knee");
        w.WriteNumber("predicted_batch_size", e.PredictedKnee);
        w.WriteNumberOrNull("measured_batch_size", e.MeasuredKnee);
        w.WriteEndObject();
        if (e.Error is { } err)
        {
            w.WriteStartObject("error");
            w.WriteNumber("throughput_at_first", err.AtFirst);
            w.WriteNumber("throughput_at_last", err.AtLast);
            w.WriteNumberOrNull("best_run_at_first", double.IsFinite(err.BestRunAtFirst) ? err.BestRunAtFirst : null);
            w.WriteNumberOrNull("best_run_at_last", double.IsFinite(err.BestRunAtLast) ? err.BestRunAtLast : null);
            w.WriteNumber("predicted_knee", err.PredictedKnee);
            w.WriteNumber("measured_knee", err.MeasuredKnee);
            w.WriteBoolean("off", err.IsOff);
            w.WriteEndObject();
        }

        w.WriteStartArray("top_layers");
        foreach (var r in e.TopLayers)
        {
            var l = r.AtFirst.Work;
            w.WriteStartObject();
            w.WriteString("name", l.Name);
            w.WriteString("op", l.OpType);
            w.WriteNumber("alike", r.Alike);
            w.WriteNumber("flops_at_first", l.Flops);
            w.WriteNumber("bytes_at_first", l.Bytes);
            w.WriteNumber("intensity_at_first", l.Intensity);
            w.WriteNumber("intensity_at_last", r.AtLast.Work.Intensity);
            if (l.Gemm is { } g)
            {
                w.WriteStartObject("gemm_at_first");
                w.WriteNumber("m", g.M);
                w.WriteNumber("n", g.N);
                w.WriteNumber("k", g.K);
                w.WriteNumber("batch_count", g.BatchCount);
                w.WriteEndObject();
                w.WriteNumberOrNull("parallel_size_at_first", l.ParallelSize);
            }

            w.WriteNumberOrNull("saturation_batch", r.SaturationBatch);
            w.WriteString("bound_at_first", r.AtFirst.Bound.ToString().ToLowerInvariant());
            w.WriteString("bound_at_last", r.AtLast.Bound.ToString().ToLowerInvariant());
            w.WriteNumber("share_at_last", r.ShareAtLast);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("verdict");
        foreach (var line in e.Verdict)
        {
            w.WriteStringValue(line);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }
}
