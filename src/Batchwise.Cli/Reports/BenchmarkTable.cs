using System.Globalization;
using Batchwise.Benchmarking;
using Batchwise.Engines;
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
        var table = Create(result, console.Profile.Width);
        console.Write(table);
        foreach (var knee in result.Knees)
        {
            var prefix = result.Knees.Count > 1 ? $"c={knee.Concurrency}: " : string.Empty;
            console.MarkupLine($"[bold]knee[/] {Markup.Escape(prefix + knee.Verdict)}");
        }

        console.MarkupLine((c.Options.Queue > 1 ? "[grey]latency is per batch (a queue's mean run: --queue)" : "[grey]latency is per batch") + "; stable: the last three windows' throughputs within the tolerance (± half their spread); CPU: process CPU time / wall / cores[/]");
        if (result.Points.Any(p => p.Transfers is not null))
        {
            console.MarkupLine("[grey]--transfers: latency = H2D (inputs from page-locked host memory) + compute + D2H (outputs back), means per batch in the phase columns; one execution context runs them in series, -c 2 or more overlaps one context's copies with another's compute (docs/transfers.md)[/]");
        }

        if (result.Points.Any(p => p.DeviceClocks is not null))
        {
            console.MarkupLine("[grey]clock: the mean SM clock over the measurement (NVML), with what held it below its maximum in a tenth of the samples or more (power cap, thermal, ...): points at different clocks are not the same device's speed[/]");
        }
        if (result.ColdStart is { } cold)
        {
            var plan = cold.FirstPlan is { } first ? $", plan {first.Seconds * 1000:F0} ms{PhaseText(first)}" : string.Empty;
            console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"cold start: first inference {cold.FirstInferenceSeconds * 1000:F0} ms after the model file was opened (read {cold.ReadSeconds * 1000:F0} ms, load {cold.LoadSeconds * 1000:F0} ms with the engine's environment probe alongside ({cold.Spans.GetValueOrDefault("environment") * 1000:F0} ms), prepare {cold.PrepareSeconds * 1000:F0} ms{plan}, first run {cold.FirstRunSeconds * 1000:F0} ms)")));
        }

        var builds = result.Points.SelectMany(p => p.PlanBuilds).ToList();
        if (builds.Count > 0)
        {
            var ms = builds.Select(b => b.Seconds * 1000).Order().ToList();
            var compiled = builds.Sum(b => b.KernelsCompiled);
            var median = builds.OrderBy(b => b.Seconds).ElementAt(builds.Count / 2);
            console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"plans built during the sweep: {builds.Count}, median {ms[ms.Count / 2]:F1} ms{PhaseText(median)}, max {ms[^1]:F1} ms ({compiled} kernels compiled for them)")));
        }

        foreach (var p in result.Points.Where(p => p.PaddedTo is not null))
        {
            console.MarkupLine(Markup.Escape($"b={p.BatchSize} ran padded to its batch profile b={p.PaddedTo}; throughput counts only its own {p.BatchSize} samples per run"));
        }

        foreach (var note in result.Notes)
        {
            console.MarkupLine($"[yellow]note[/] {Markup.Escape(note)}");
        }
    }

    /// <summary>The table of points; narrower than <see cref="FullWidth"/> columns, only the essential columns.</summary>
    public static Table Create(BenchmarkResult result, int width = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(result);
        var ic = CultureInfo.InvariantCulture;
        var full = width >= FullWidth;
        var smallest = result.Points.Count == 0 ? 1 : result.Points.Min(q => q.BatchSize);
        var hasDevice = result.Points.Any(p => p.DeviceUtilizationPercent is not null || p.DeviceMemoryUsedBytes is not null);
        var hasTransfers = result.Points.Any(p => p.Transfers is not null);
        var hasClocks = result.Points.Any(p => p.DeviceClocks is not null);
        var severalConcurrencies = result.Points.Select(p => p.Concurrency).Distinct().Count() > 1;
        var columns = new List<(string Header, bool Show, Func<BenchmarkPoint, string> Cell)>
        {
            ("batch", true, p => BatchCell(result, p)),
            ("conc", full || severalConcurrencies, p => p.Concurrency.ToString(ic)),
            ("samples/s", true, p => Number(p.Throughput)),
            ($"vs b={smallest}", true, p => string.Create(ic, $"{p.Throughput / Baseline(result, p).Throughput:0.00}x")),
            ("ms/sample", true, p => Number(p.TimePerSampleMs)),
            ("p50 ms", true, p => Number(p.LatencyMs.P50)),
            ("p90 ms", full, p => Number(p.LatencyMs.P90)),
            ("p99 ms", true, p => Number(p.LatencyMs.P99)),
            ("sd ms", full, p => Number(p.LatencyMs.StdDev)),
            ("H2D ms", hasTransfers, p => p.Transfers is { } t ? Number(t.HostToDeviceMs.Mean) : "-"),
            ("compute ms", hasTransfers, p => p.Transfers is { } t ? Number(t.ComputeMs.Mean) : "-"),
            ("D2H ms", hasTransfers, p => p.Transfers is { } t ? Number(t.DeviceToHostMs.Mean) : "-"),
            ("CPU", full, p => string.Create(ic, $"{p.CpuUtilization * 100:0}%")),
            ("peak mem", full, p => Bytes(p.PeakWorkingSetBytes)),
            ("device", hasDevice, p => p.DeviceUtilizationPercent is { } u ? string.Create(ic, $"{u:0}%") : "-"),
            ("dev mem", hasDevice, p => p.DeviceMemoryUsedBytes is { } m ? Bytes(m) : "-"),
            ("clock", hasClocks, p => p.DeviceClocks is { } k ? ClockCell(k) : "-"),
            ("stable", true, p => p.Stable ? string.Create(ic, $"ok ±{p.Spread * 50:0.0}%") : string.Create(ic, $"[yellow]UNSTABLE ±{p.Spread * 50:0}%[/]")),
        };
        var shown = columns.Where(c => c.Show).ToList();
        var table = new Table().Border(full ? TableBorder.Rounded : TableBorder.Simple);
        foreach (var (header, _, _) in shown)
        {
            table.AddColumn(header == "stable" ? new TableColumn(header) : new TableColumn(header).RightAligned());
        }

        foreach (var p in result.Points)
        {
            table.AddRow(shown.Select(c => c.Cell(p)).ToArray());
        }

        return table;
    }

    /// <summary>The mean SM clock in MHz, and the slowing limit (power, thermal) that held it most where one did in a tenth of the samples or more ("1,755 power cap").</summary>
    private static string ClockCell(DeviceClocks clocks)
    {
        var clock = clocks.SmClockMhz.ToString("N0", CultureInfo.InvariantCulture);
        return clocks.SlowedBy() is [var limit, ..] ? $"{clock} [yellow]{limit}[/]" : clock;
    }

    /// <summary>Console width from which every column is shown.</summary>
    public const int FullWidth = 120;

    private static BenchmarkPoint Baseline(BenchmarkResult result, BenchmarkPoint p) =>
        result.Points.Where(q => q.Concurrency == p.Concurrency).MinBy(q => q.BatchSize)!;

    private static string BatchCell(BenchmarkResult result, BenchmarkPoint p)
    {
        var batch = p.BatchSize.ToString(CultureInfo.InvariantCulture);
        var knee = result.Knees.FirstOrDefault(k => k.Concurrency == p.Concurrency);
        return knee?.KneeBatchSize == p.BatchSize && result.Points.Count(q => q.Concurrency == p.Concurrency) > 1
            ? $"[bold green]{batch} knee[/]"
            : batch;
    }

    /// <summary>A number with about four significant digits.</summary>
    public static string Number(double value) => value switch
    {
        >= 1000 => value.ToString("N0", CultureInfo.InvariantCulture),
        >= 100 => value.ToString("0.0", CultureInfo.InvariantCulture),
        >= 10 => value.ToString("0.00", CultureInfo.InvariantCulture),
        _ => value.ToString("0.000", CultureInfo.InvariantCulture),
    };

    /// <summary>" (graph 3.1, library_queries 0.2, ... ms)" from a build's phases, or nothing where the engine measures none.</summary>
    private static string PhaseText(PlanBuild build) => build.Phases.Count == 0
        ? string.Empty
        : " (" + string.Join(", ", build.Phases.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {p.Value * 1000:F1}"))) + " ms)";

    private static string Bytes(long bytes) => bytes >= 1L << 30
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.00} GiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0} MiB");
}
