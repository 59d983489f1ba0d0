namespace Batchwise.Analysis;

/// <summary>Reads the measured points of a `batchwise bench --json` file (schema batchwise.bench, docs/bench-schema.md), or of an earlier `explain --json` report.</summary>
public static class BenchFile
{
    /// <summary>What a bench file holds for explain: its points at the lowest concurrency, and what measured them.</summary>
    /// <param name="Points">One point per batch size.</param>
    /// <param name="Engine">Engine name recorded in the file.</param>
    /// <param name="Device">Device recorded in the file.</param>
    /// <param name="Model">Model source recorded in the file.</param>
    public sealed record Contents(IReadOnlyList<MeasuredPoint> Points, string Engine, string Device, string Model);

    /// <summary>Reads a bench JSON file through its record (<see cref="Reports.BenchDocument"/>).</summary>
    public static Contents Read(string path)
    {
        const string Hint = "Pass a file written by `batchwise bench MODEL --json FILE.json`, or leave out --bench to run a short sweep.";
        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Bench result '{path}' not found", Hint);
        }

        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot read '{path}': {e.Message}", Hint, e);
        }

        if (ExplanationPoints(text, path) is { } explained)
        {
            return explained;
        }

        var document = Reports.ReportJson.Deserialize<Reports.BenchDocument>(text, path, "bench result", Hint);
        if (document.Schema != Reports.BenchDocument.SchemaName)
        {
            throw new BatchwiseException($"'{path}' is not a bench result (schema \"{document.Schema}\", not \"{Reports.BenchDocument.SchemaName}\")", Hint);
        }

        if (document.SchemaVersion > Reports.BenchDocument.CurrentVersion)
        {
            throw new BatchwiseException($"'{path}' uses bench schema version {document.SchemaVersion}; this Batchwise reads up to {Reports.BenchDocument.CurrentVersion}", "Update Batchwise, or re-run the bench with this version.");
        }

        var points = document.Points ?? [];
        if (points.Count == 0)
        {
            throw new BatchwiseException($"'{path}' holds no measured points", "Run the bench until at least one batch size is measured.");
        }

        // What explain reads of each point must be there (a file may leave out the rest: fields are added within a version).
        for (var i = 0; i < points.Count; i++)
        {
            if (points[i] is not { BatchSize: > 0 } point || point.LatencyMs is null)
            {
                throw new BatchwiseException($"'{path}' is not a readable bench result: point {i} has no batch_size or latency_ms", Hint);
            }
        }

        var measured = MeasuredSweep.AtLowestConcurrency(points.Select(p =>
            (p.Concurrency, new MeasuredPoint(p.BatchSize, p.ThroughputSamplesPerS, p.LatencyMs.P50 / 1e3, p.LatencyMs.P90 / 1e3, p.LatencyMs.Count, p.LatencyMs.Min / 1e3) { Clocks = p.DeviceClocks })));
        return new Contents(measured, document.Engine?.Name ?? "?", document.Engine?.Device ?? "?", document.Model?.Source ?? "?");
    }

    /// <summary>
    /// The measured points of an earlier `explain --json` report (schema batchwise.explain: its "measured" rows, its
    /// ceilings' engine and device), so a model can be explained again against a sweep measured before; null when
    /// <paramref name="text"/> is not such a report.
    /// </summary>
    private static Contents? ExplanationPoints(string text, string path)
    {
        System.Text.Json.JsonDocument document;
        try
        {
            document = System.Text.Json.JsonDocument.Parse(text);
        }
        catch (System.Text.Json.JsonException)
        {
            return null; // the bench reader says what is wrong with it
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != System.Text.Json.JsonValueKind.Object || !root.TryGetProperty("schema", out var schema) || schema.ValueKind != System.Text.Json.JsonValueKind.String || schema.GetString() != ExplanationJson.SchemaName)
            {
                return null;
            }

            const string Hint = "Pass an `explain --json` report with measured points (not one made with --no-measure), or a `bench --json` file.";
            if (!root.TryGetProperty("measured", out var rows) || rows.ValueKind != System.Text.Json.JsonValueKind.Array || rows.GetArrayLength() == 0)
            {
                throw new BatchwiseException($"'{path}' is an explain report without measured points", Hint);
            }

            var points = new List<MeasuredPoint>();
            foreach (var row in rows.EnumerateArray())
            {
                double Number(string name) => row.TryGetProperty(name, out var v) && v.ValueKind == System.Text.Json.JsonValueKind.Number ? v.GetDouble()
                    : throw new BatchwiseException($"'{path}' is not a readable explain report: a measured point has no {name}", Hint);
                points.Add(new MeasuredPoint((int)Number("batch_size"), Number("throughput_samples_per_s"), Number("latency_p50_s"), Number("latency_p90_s"), (int)Number("runs"), Number("latency_min_s"))
                {
                    Clocks = row.TryGetProperty("device_clocks", out var clocks) && clocks.ValueKind == System.Text.Json.JsonValueKind.Object
                        ? System.Text.Json.JsonSerializer.Deserialize<Benchmarking.DeviceClocks>(clocks, Reports.ReportJson.Options) : null,
                });
            }

            string Text(string section, string name) => root.TryGetProperty(section, out var s) && s.ValueKind == System.Text.Json.JsonValueKind.Object && s.TryGetProperty(name, out var v) && v.ValueKind == System.Text.Json.JsonValueKind.String ? v.GetString()! : "?";
            return new Contents(points, Text("ceilings", "engine"), Text("ceilings", "device"), Text("context", "model"));
        }
    }
}
