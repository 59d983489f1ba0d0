using System.Text.Json;

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

    /// <summary>Reads a bench JSON file.</summary>
    public static Contents Read(string path)
    {
        const string Hint = "Pass a file written by `batchwise bench MODEL --json FILE.json`, or leave out --bench to run a short sweep.";
        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Bench result '{path}' not found", Hint);
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("schema", out var schema) || schema.GetString() != Reports.BenchmarkJson.SchemaName)
            {
                throw new BatchwiseException($"'{path}' is not a bench result (no \"schema\": \"{Reports.BenchmarkJson.SchemaName}\")", Hint);
            }

            if (root.TryGetProperty("schema_version", out var version) && version.GetInt32() > Reports.BenchmarkJson.SchemaVersion)
            {
                throw new BatchwiseException($"'{path}' uses bench schema version {version.GetInt32()}; this Batchwise reads up to {Reports.BenchmarkJson.SchemaVersion}", "Update Batchwise, or re-run the bench with this version.");
            }

            var raw = new List<(int Concurrency, MeasuredPoint Point)>();
            foreach (var p in root.GetProperty("points").EnumerateArray())
            {
                var latency = p.GetProperty("latency_ms");
                raw.Add((p.GetProperty("concurrency").GetInt32(), new MeasuredPoint(
                    p.GetProperty("batch_size").GetInt32(),
                    p.GetProperty("throughput_samples_per_s").GetDouble(),
                    latency.GetProperty("p50").GetDouble() / 1e3,
                    latency.GetProperty("p90").GetDouble() / 1e3,
                    latency.GetProperty("count").GetInt32(),
                    latency.TryGetProperty("min", out var min) ? min.GetDouble() / 1e3 : double.NaN)));
            }

            if (raw.Count == 0)
            {
                throw new BatchwiseException($"'{path}' holds no measured points", "Run the bench until at least one batch size is measured.");
            }

            var lowest = raw.Min(r => r.Concurrency);
            var points = raw.Where(r => r.Concurrency == lowest).Select(r => r.Point).GroupBy(p => p.BatchSize).Select(g => g.Last()).OrderBy(p => p.BatchSize).ToList();
            var engine = root.TryGetProperty("engine", out var e) ? e : default;
            var model = root.TryGetProperty("model", out var m) && m.TryGetProperty("source", out var src) ? src.GetString() ?? "?" : "?";
            return new Contents(
                points,
                engine.ValueKind == JsonValueKind.Object && engine.TryGetProperty("name", out var n) ? n.GetString() ?? "?" : "?",
                engine.ValueKind == JsonValueKind.Object && engine.TryGetProperty("device", out var d) ? d.GetString() ?? "?" : "?",
                model);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new BatchwiseException($"'{path}' is not a readable bench result: {e.Message}", Hint, e);
        }
    }
}
