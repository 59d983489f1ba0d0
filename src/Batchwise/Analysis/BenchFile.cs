using System.Text.Json;

namespace Batchwise.Analysis;

/// <summary>
/// Reads the measured points out of a `batchwise bench --json` file: every object that carries a batch
/// size and a throughput (names in snake_case or camelCase), wherever it sits in the document.
/// </summary>
public static class BenchFile
{
    private static readonly string[] BatchNames = ["batch_size", "batchSize", "BatchSize", "batch"];
    private static readonly string[] ThroughputNames = ["throughput", "throughput_per_second", "throughputPerSecond", "samples_per_second", "Throughput"];
    private static readonly string[] MedianNames = ["latency_p50_ms", "p50_ms", "latency_median_ms", "median_ms"];
    private static readonly string[] P90Names = ["latency_p90_ms", "p90_ms"];

    /// <summary>Reads a bench JSON file into measured points, one per batch size (the best throughput where a size repeats).</summary>
    public static IReadOnlyList<MeasuredPoint> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new BatchwiseException($"Bench result '{path}' not found", "Write one with `batchwise bench MODEL --json FILE.json`, or leave out --bench to run a short sweep.");
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var points = new List<MeasuredPoint>();
            Collect(doc.RootElement, points);
            if (points.Count == 0)
            {
                throw new BatchwiseException($"'{path}' holds no measured batch sizes (no objects with a batch size and a throughput)", "Pass a file written by `batchwise bench --json`.");
            }

            return points.GroupBy(p => p.BatchSize).Select(g => g.MaxBy(p => p.Throughput)!).OrderBy(p => p.BatchSize).ToList();
        }
        catch (JsonException e)
        {
            throw new BatchwiseException($"'{path}' is not JSON: {e.Message}", "Pass a file written by `batchwise bench --json`.", e);
        }
    }

    private static void Collect(JsonElement e, List<MeasuredPoint> points)
    {
        if (e.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in e.EnumerateArray())
            {
                Collect(item, points);
            }
        }
        else if (e.ValueKind == JsonValueKind.Object)
        {
            var batch = Number(e, BatchNames);
            var throughput = Number(e, ThroughputNames);
            if (batch is >= 1 && throughput is > 0)
            {
                var b = (int)batch.Value;
                var median = Number(e, MedianNames) is { } ms ? ms / 1e3 : b / throughput.Value;
                var p90 = Number(e, P90Names) is { } p ? p / 1e3 : median;
                var runs = (int)(Number(e, ["runs", "samples", "count", "iterations"]) ?? 0);
                points.Add(new MeasuredPoint(b, throughput.Value, median, p90, runs));
                return;
            }

            foreach (var prop in e.EnumerateObject())
            {
                Collect(prop.Value, points);
            }
        }
    }

    private static double? Number(JsonElement e, string[] names)
    {
        foreach (var n in names)
        {
            if (e.TryGetProperty(n, out var v) && v.ValueKind == JsonValueKind.Number)
            {
                return v.GetDouble();
            }
        }

        return null;
    }
}
