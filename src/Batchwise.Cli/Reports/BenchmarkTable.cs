using System.Globalization;
using Batchwise.Benchmarking;
using Spectre.Console;

namespace Batchwise.Cli.Reports;

/// <summary>Renders a sweep for the console: context, a table of points, the knee and the notes.</summary>
public static class BenchmarkTable
{
    /// <summary>Writes the whole console report.</summary>
    public static void Write(IAnsiConsole console, BenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(result);
        var c = result.Context;
        console.MarkupLine(Markup.Escape($"model {c.Model.Source} ({c.Model.Name}, sha256 {c.Model.Sha256[..12]}) inputs {string.Join(", ", c.Model.Inputs)}"));
        console.MarkupLine(Markup.Escape($"engine {c.Engine.Engine} {c.Engine.Version} on {c.Engine.Device} ({c.LogicalCores} logical cores), {string.Join(", ", c.Engine.Details.Select(d => $"{d.Key}={d.Value}"))}"));
        var table = Create(result);
        console.Write(table);
        foreach (var knee in result.Knees)
        {
            var prefix = result.Knees.Count > 1 ? $"c={knee.Concurrency}: " : string.Empty;
            console.MarkupLine($"[bold]knee[/] {Markup.Escape(prefix + knee.Verdict)}");
        }

        console.MarkupLine("[grey]latency is per batch; stable: the last three windows' throughputs within the tolerance (± half their spread); CPU: process CPU time / wall / cores[/]");
        foreach (var note in result.Notes)
        {
            console.MarkupLine($"[yellow]note[/] {Markup.Escape(note)}");
        }
    }

    /// <summary>The table of points.</summary>
    public static Table Create(BenchmarkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var hasDevice = result.Points.Any(p => p.DeviceUtilizationPercent is not null || p.DeviceMemoryUsedBytes is not null);
        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn(new TableColumn("batch").RightAligned());
        table.AddColumn(new TableColumn("conc").RightAligned());
        table.AddColumn(new TableColumn("samples/s").RightAligned());
        var smallest = result.Points.Count == 0 ? 1 : result.Points.Min(q => q.BatchSize);
        table.AddColumn(new TableColumn($"vs b={smallest}").RightAligned());
        table.AddColumn(new TableColumn("ms/sample").RightAligned());
        table.AddColumn(new TableColumn("p50 ms").RightAligned());
        table.AddColumn(new TableColumn("p90 ms").RightAligned());
        table.AddColumn(new TableColumn("p99 ms").RightAligned());
        table.AddColumn(new TableColumn("sd ms").RightAligned());
        table.AddColumn(new TableColumn("CPU").RightAligned());
        table.AddColumn(new TableColumn("peak mem").RightAligned());
        if (hasDevice)
        {
            table.AddColumn(new TableColumn("device").RightAligned());
            table.AddColumn(new TableColumn("dev mem").RightAligned());
        }

        table.AddColumn(new TableColumn("stable"));
        var ic = CultureInfo.InvariantCulture;
        foreach (var p in result.Points)
        {
            var baseline = result.Points.Where(q => q.Concurrency == p.Concurrency).MinBy(q => q.BatchSize)!;
            var knee = result.Knees.FirstOrDefault(k => k.Concurrency == p.Concurrency);
            var batch = p.BatchSize.ToString(ic);
            if (knee?.KneeBatchSize == p.BatchSize && result.Points.Count(q => q.Concurrency == p.Concurrency) > 1)
            {
                batch = $"[bold green]{batch} knee[/]";
            }

            var l = p.LatencyMs;
            var cells = new List<string>
            {
                batch,
                p.Concurrency.ToString(ic),
                Number(p.Throughput),
                string.Create(ic, $"{p.Throughput / baseline.Throughput:0.00}x"),
                Number(p.TimePerSampleMs),
                Number(l.P50),
                Number(l.P90),
                Number(l.P99),
                Number(l.StdDev),
                string.Create(ic, $"{p.CpuUtilization * 100:0}%"),
                Bytes(p.PeakWorkingSetBytes),
            };
            if (hasDevice)
            {
                cells.Add(p.DeviceUtilizationPercent is { } u ? string.Create(ic, $"{u:0}%") : "-");
                cells.Add(p.DeviceMemoryUsedBytes is { } m ? Bytes(m) : "-");
            }

            cells.Add(p.Stable
                ? string.Create(ic, $"ok ±{p.Spread * 50:0.0}%")
                : string.Create(ic, $"[yellow]UNSTABLE ±{p.Spread * 50:0}%[/]"));
            table.AddRow(cells.ToArray());
        }

        return table;
    }

    /// <summary>A number with about four significant digits.</summary>
    public static string Number(double value) => value switch
    {
        >= 1000 => value.ToString("N0", CultureInfo.InvariantCulture),
        >= 100 => value.ToString("0.0", CultureInfo.InvariantCulture),
        >= 10 => value.ToString("0.00", CultureInfo.InvariantCulture),
        _ => value.ToString("0.000", CultureInfo.InvariantCulture),
    };

    private static string Bytes(long bytes) => bytes >= 1L << 30
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.00} GiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0} MiB");
}
