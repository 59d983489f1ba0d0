namespace Batchwise.Analysis;

/// <summary>Reads the measured points of a `batchwise bench --json` file (schema batchwise.bench, docs/bench-schema.md).</summary>
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
            (p.Concurrency, new MeasuredPoint(p.BatchSize, p.ThroughputSamplesPerS, p.LatencyMs.P50 / 1e3, p.LatencyMs.P90 / 1e3, p.LatencyMs.Count, p.LatencyMs.Min / 1e3))));
        return new Contents(measured, document.Engine?.Name ?? "?", document.Engine?.Device ?? "?", document.Model?.Source ?? "?");
    }
}
