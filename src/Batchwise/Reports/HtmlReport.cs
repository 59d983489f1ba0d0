using System.Globalization;
using System.Net;
using System.Text;
using Batchwise.Analysis;
using ScottPlot;

namespace Batchwise.Reports;

/// <summary>One measured curve for a bench report (e.g. one precision or concurrency level).</summary>
/// <param name="Name">Legend text.</param>
/// <param name="Points">Measured batch sizes.</param>
public sealed record BenchSeries(string Name, IReadOnlyList<MeasuredPoint> Points);

/// <summary>
/// Self-contained HTML reports: one file, inline CSS and inline SVG plots (ScottPlot), no external URL,
/// readable offline and attachable to an issue.
/// </summary>
public static class HtmlReport
{
    private const int PlotWidth = 620;
    private const int PlotHeight = 380;

    private static readonly Color Measured = Color.FromHex("#1f77b4");
    private static readonly Color Predicted = Color.FromHex("#d62728");
    private static readonly Color Extra = Color.FromHex("#2ca02c");
    private static readonly Color[] SeriesColors = [Measured, Color.FromHex("#9467bd"), Color.FromHex("#ff7f0e"), Color.FromHex("#8c564b"), Color.FromHex("#17becf")];

    /// <summary>Writes the explain report: curves measured vs predicted, the roofline with the layers, the tables and the verdict.</summary>
    public static void WriteExplain(string path, Explanation explanation, IReadOnlyDictionary<string, string> context)
    {
        ArgumentNullException.ThrowIfNull(explanation);
        ArgumentNullException.ThrowIfNull(context);
        Write(path, RenderExplain(explanation, context));
    }

    /// <summary>Writes a bench report: throughput and latency against batch size per series, and the table (plus an explanation when given).</summary>
    public static void WriteBench(string path, string title, IReadOnlyList<BenchSeries> series, IReadOnlyDictionary<string, string> context, Explanation? explanation = null)
    {
        ArgumentNullException.ThrowIfNull(series);
        ArgumentNullException.ThrowIfNull(context);
        Write(path, RenderBench(title, series, context, explanation));
    }

    /// <summary>Writes the report of a `batchwise bench` sweep: one series per concurrency, with the sweep's context.</summary>
    public static void WriteBench(string path, Batchwise.Benchmarking.BenchmarkResult result, Explanation? explanation = null)
    {
        ArgumentNullException.ThrowIfNull(result);
        var series = result.Points
            .GroupBy(p => p.Concurrency)
            .OrderBy(g => g.Key)
            .Select(g => new BenchSeries(
                F($"concurrency {g.Key}"),
                g.GroupBy(p => p.BatchSize).Select(b => b.Last()).OrderBy(p => p.BatchSize)
                    .Select(p => new MeasuredPoint(p.BatchSize, p.Throughput, p.LatencyMs.P50 / 1e3, p.LatencyMs.P90 / 1e3, p.LatencyMs.Count, p.LatencyMs.Min / 1e3)).ToList()))
            .ToList();
        var c = result.Context;
        var context = new Dictionary<string, string>
        {
            ["model"] = c.Model.Source,
            ["engine"] = $"{c.Engine.Engine} {c.Engine.Version}",
            ["device"] = c.Engine.Device,
            ["machine"] = F($"{c.MachineName}, {c.Cpu}, {c.LogicalCores} logical cores, {c.OperatingSystem}"),
            ["runtime"] = c.Runtime,
            ["batchwise"] = c.BatchwiseVersion,
            ["date"] = F($"{c.DateUtc:yyyy-MM-dd HH:mm} UTC"),
            ["stop reason"] = result.StopReason.ToString(),
        };
        foreach (var (note, i) in result.Notes.Select((n, i) => (n, i)))
        {
            context[F($"note {i + 1}")] = note;
        }

        foreach (var k in result.Knees)
        {
            context[F($"knee (concurrency {k.Concurrency})")] = k.Verdict;
        }

        // --transfers: each point's latency split into its phases (means), docs/transfers.md.
        foreach (var p in result.Points.Where(p => p.Transfers is not null))
        {
            var t = p.Transfers!;
            context[F($"phases b={p.BatchSize} c={p.Concurrency}")] =
                $"H2D {Units.Duration(t.HostToDeviceMs.Mean / 1e3)} + compute {Units.Duration(t.ComputeMs.Mean / 1e3)} + D2H {Units.Duration(t.DeviceToHostMs.Mean / 1e3)} (means per batch)";
        }

        WriteBench(path, $"bench: {c.Model.Name} on {c.Engine.Device} via {c.Engine.Engine}", series, context, explanation);
    }

    /// <summary>The explain report as HTML text.</summary>
    public static string RenderExplain(Explanation e, IReadOnlyDictionary<string, string> context)
    {
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(context);
        var html = new StringBuilder();
        Head(html, $"Batchwise explain — {e.ModelName}");
        html.Append("<h1>Why batching ").Append(Gain(e) >= 1.3 ? "helps" : "barely helps").Append(": ").Append(Enc(e.ModelName)).Append("</h1>\n");
        html.Append("<p class=\"sub\">").Append(Enc(e.Input)).Append(" · ").Append(Enc(e.Ceilings.Device)).Append(" via ").Append(Enc(e.Ceilings.Engine))
            .Append(" · ").Append(Enc(Units.Flops(e.FlopsPerSample) + " per sample")).Append("</p>\n");
        if (e.Error is { IsOff: true })
        {
            html.Append("<p class=\"warn\"><b>The prediction is off by more than ").Append(Enc(F($"{PredictionError.Tolerance:P0}"))).Append(" here</b> — see the last line of the verdict. The measured curve is the truth; the prediction explains where time goes.</p>\n");
        }

        html.Append("<h2>Verdict</h2>\n<ul class=\"verdict\">\n");
        foreach (var line in e.Verdict)
        {
            html.Append("<li>").Append(Enc(line)).Append("</li>\n");
        }

        html.Append("</ul>\n<div class=\"plots\">\n");
        Figure(html, "Throughput against batch size", ThroughputPlot(e.Measured.Count > 0 ? [new BenchSeries("measured", e.Measured)] : [], e.Predicted));
        Figure(html, "Latency against batch size", LatencyPlot(e.Measured.Count > 0 ? [new BenchSeries("measured", e.Measured)] : [], e.Predicted));
        Figure(html, "Roofline: the costly layers at the smallest and largest batch", RooflinePlot(e));
        Figure(html, "Where predicted time goes", BoundPlot(e.Predicted));
        html.Append("</div>\n");

        html.Append("<h2>Throughput: predicted and measured</h2>\n");
        var rows = e.Predicted.Select(p =>
        {
            var m = e.Measured.FirstOrDefault(x => x.BatchSize == p.BatchSize);
            return new[]
            {
                p.BatchSize.ToString(CultureInfo.InvariantCulture),
                Units.Rate(p.Throughput),
                m is null ? "–" : Units.Rate(m.Throughput),
                m is null ? "–" : F($"{(p.Throughput - m.Throughput) / m.Throughput:+0%;-0%;0%}"),
                m is null || !double.IsFinite(m.LatencyMinSeconds) ? "–" : Units.Rate(m.BestRunThroughput),
                Units.Duration(p.Seconds),
                m is null ? "–" : Units.Duration(m.LatencyMedianSeconds),
                F($"{p.SecondsBoundBy(Bound.Compute) / p.Seconds:P0} / {p.SecondsBoundBy(Bound.Memory) / p.Seconds:P0} / {p.SecondsBoundBy(Bound.Launch) / p.Seconds:P0}"),
            };
        });
        Table(html, ["batch", "predicted /s", "measured /s", "error", "fastest run /s", "predicted latency", "measured latency (median)", "compute / memory / overhead"], rows);

        html.Append("<h2>The layers that cost most</h2>\n");
        var b0 = e.Predicted[0].BatchSize;
        var b1 = e.Predicted[^1].BatchSize;
        Table(
            html,
            ["layer", "op", F($"FLOPs (b={b0})"), F($"bytes (b={b0})"), F($"FLOP/B (b={b0})"), F($"FLOP/B (b={b1})"), F($"M / N / K (b={b0})"), "fills device at b", F($"bound b={b0}"), F($"bound b={b1}"), F($"share b={b1} (all alike)")],
            e.TopLayers.Select(r => new[]
            {
                r.Label,
                r.AtFirst.Work.OpType,
                Units.Flops(r.AtFirst.Work.Flops),
                Units.Bytes(r.AtFirst.Work.Bytes),
                F($"{r.AtFirst.Work.Intensity:N1}"),
                F($"{r.AtLast.Work.Intensity:N1}"),
                r.AtFirst.Work.GemmText,
                r.SaturationBatch is { } s ? (s <= 1 ? "1 (already)" : s.ToString(CultureInfo.InvariantCulture)) : "–",
                r.AtFirst.Bound.ToString().ToLowerInvariant(),
                r.AtLast.Bound.ToString().ToLowerInvariant(),
                F($"{r.ShareAtLast:P1}"),
            }));

        html.Append("<h2>Device ceilings</h2>\n");
        var c = e.Ceilings;
        Table(html, ["ceiling", "value"], new[]
        {
            new[] { "predicting in", c.Precision },
            new[] { "fp32 GEMM peak", Units.FlopRate(c.PeakFlops) },
            new[] { "tf32 GEMM peak", c.PeakFlopsTf32 is { } t ? Units.FlopRate(t) : "not measured" },
            new[] { "fp32 convolution peak", c.PeakConvFlops is { } cv ? Units.FlopRate(cv) : "as GEMM" },
            new[] { "fp16 GEMM peak", c.PeakFlopsFp16 is { } h ? Units.FlopRate(h) : "not measured" },
            new[] { F($"{c.Precision} rate by N (efficiency)"), c.RateCurve.Count == 0 ? "not measured: min(1, N / saturation N)" : string.Join(", ", c.RateCurve.Select(p => F($"N={p.N:N0}: {Units.FlopRate(p.Flops)} ({c.Efficiency(p.N):P0})"))) },
            new[] { "memory bandwidth", F($"{c.BandwidthBytesPerSecond / 1e9:N1} GB/s") },
            new[] { "ridge point", F($"{c.RidgeIntensity:N1} FLOP/byte") },
            new[] { "GEMM saturates at N", F($"{c.SaturationN:N0} ({c.SaturationSource})") },
            new[] { "overhead per run / per op", F($"{c.RunOverheadSeconds * 1e6:N1} µs / {c.OpOverheadSeconds * 1e6:N2} µs{(c.Launch.Length > 0 ? $" ({c.Launch})" : string.Empty)}") },
            new[] { "measured", F($"{c.MeasuredAt:yyyy-MM-dd HH:mm} UTC on {c.Machine} in {c.CalibrationSeconds:N1} s") },
        });
        Context(html, context);
        Foot(html);
        return html.ToString();
    }

    /// <summary>The bench report as HTML text.</summary>
    public static string RenderBench(string title, IReadOnlyList<BenchSeries> series, IReadOnlyDictionary<string, string> context, Explanation? explanation = null)
    {
        ArgumentNullException.ThrowIfNull(series);
        ArgumentNullException.ThrowIfNull(context);
        var html = new StringBuilder();
        Head(html, $"Batchwise bench — {title}");
        html.Append("<h1>").Append(Enc(title)).Append("</h1>\n<div class=\"plots\">\n");
        Figure(html, "Throughput against batch size", ThroughputPlot(series, explanation?.Predicted));
        Figure(html, "Latency against batch size", LatencyPlot(series, explanation?.Predicted));
        html.Append("</div>\n");
        foreach (var s in series)
        {
            html.Append("<h2>").Append(Enc(s.Name)).Append("</h2>\n");
            var best = s.Points.Count > 0 ? s.Points.Max(p => p.Throughput) : 0;
            Table(html, ["batch", "throughput /s", "vs b=first", "latency median", "latency p90", "runs"], s.Points.Select(p => new[]
            {
                p.BatchSize.ToString(CultureInfo.InvariantCulture),
                Units.Rate(p.Throughput),
                F($"{p.Throughput / s.Points[0].Throughput:N2}x"),
                Units.Duration(p.LatencyMedianSeconds),
                Units.Duration(p.LatencyP90Seconds),
                p.Runs.ToString(CultureInfo.InvariantCulture),
            }));
            if (s.Points.Count > 0)
            {
                html.Append("<p>Knee: b=").Append(Explainer.KneeOf(s.Points.Select(p => (p.BatchSize, p.Throughput))).ToString(CultureInfo.InvariantCulture))
                    .Append(" (first batch within ").Append(F($"{Batchwise.Benchmarking.Knee.DefaultThreshold:P0}")).Append(" of the best, ").Append(Units.Rate(best)).Append("/s).</p>\n");
            }
        }

        if (explanation is not null)
        {
            html.Append("<h2>Why (explain)</h2>\n<ul class=\"verdict\">\n");
            foreach (var line in explanation.Verdict)
            {
                html.Append("<li>").Append(Enc(line)).Append("</li>\n");
            }

            html.Append("</ul>\n");
        }

        Context(html, context);
        Foot(html);
        return html.ToString();
    }

    private static string ThroughputPlot(IReadOnlyList<BenchSeries> measured, IReadOnlyList<BatchPrediction>? predicted)
    {
        var plot = NewPlot("batch size (log2)", "samples / s");
        var batches = new SortedSet<int>();
        var colors = SeriesColors;
        for (var i = 0; i < measured.Count; i++)
        {
            var pts = measured[i].Points;
            var line = plot.Add.Scatter(pts.Select(p => Math.Log2(p.BatchSize)).ToArray(), pts.Select(p => p.Throughput).ToArray(), colors[i % colors.Length]);
            line.LegendText = measured[i].Name;
            line.LineWidth = 2;
            line.MarkerSize = 7;
            batches.UnionWith(pts.Select(p => p.BatchSize));
        }

        foreach (var s in measured.Where(s => measured.Count == 1 && s.Points.Count > 0 && s.Points.All(p => double.IsFinite(p.LatencyMinSeconds))))
        {
            var best = plot.Add.ScatterPoints(s.Points.Select(p => Math.Log2(p.BatchSize)).ToArray(), s.Points.Select(p => p.BestRunThroughput).ToArray(), Extra);
            best.LegendText = "fastest run";
            best.MarkerShape = MarkerShape.OpenTriangleUp;
            best.MarkerSize = 8;
        }

        AddPredicted(plot, predicted, p => p.Throughput, "predicted (roofline)", batches);

        BatchTicks(plot, batches);
        plot.Axes.Margins(0.05, 0.1);
        plot.Axes.SetLimitsY(0, plot.Axes.GetLimits().Top);
        plot.ShowLegend(Alignment.LowerRight);
        return Svg(plot);
    }

    private static string LatencyPlot(IReadOnlyList<BenchSeries> measured, IReadOnlyList<BatchPrediction>? predicted)
    {
        var plot = NewPlot("batch size (log2)", "latency per run, ms");
        var batches = new SortedSet<int>();
        for (var i = 0; i < measured.Count; i++)
        {
            var s = measured[i];
            var color = SeriesColors[i % SeriesColors.Length];
            var median = plot.Add.Scatter(s.Points.Select(p => Math.Log2(p.BatchSize)).ToArray(), s.Points.Select(p => p.LatencyMedianSeconds * 1e3).ToArray(), color);
            median.LegendText = $"{s.Name} median";
            median.LineWidth = 2;
            var p90 = plot.Add.Scatter(s.Points.Select(p => Math.Log2(p.BatchSize)).ToArray(), s.Points.Select(p => p.LatencyP90Seconds * 1e3).ToArray(), color.WithAlpha(0.55));
            p90.LegendText = $"{s.Name} p90";
            p90.LineWidth = 1;
            p90.MarkerShape = MarkerShape.OpenCircle;
            batches.UnionWith(s.Points.Select(p => p.BatchSize));
        }

        AddPredicted(plot, predicted, p => p.Seconds * 1e3, "predicted", batches);

        BatchTicks(plot, batches);
        plot.Axes.Margins(0.05, 0.1);
        plot.Axes.SetLimitsY(0, plot.Axes.GetLimits().Top);
        plot.ShowLegend(Alignment.UpperLeft);
        return Svg(plot);
    }

    private static string RooflinePlot(Explanation e)
    {
        var plot = NewPlot("arithmetic intensity, FLOP/byte (log10)", "GFLOP/s (log10)");
        var c = e.Ceilings;
        var layers = e.TopLayers.SelectMany(r => new[] { r.AtFirst, r.AtLast }).Where(l => l.Work.Flops > 0 && l.Work.Bytes > 0).ToList();
        var lo = Math.Min(0.1, layers.Count > 0 ? layers.Min(l => l.Work.Intensity) / 2 : 0.1);
        var hi = Math.Max(c.RidgeIntensity * 20, layers.Count > 0 ? layers.Max(l => l.Work.Intensity) * 2 : 100);
        var xs = Enumerable.Range(0, 121).Select(i => Math.Log10(lo) + ((Math.Log10(hi) - Math.Log10(lo)) * i / 120)).ToArray();
        var peaks = new List<(double Flops, string Name)> { (c.PeakInUse, c.Precision + " GEMM") };
        if (c.Precision == "fp32" && c.PeakConvFlops is { } conv)
        {
            peaks.Add((conv, "conv"));
        }

        peaks = peaks.OrderByDescending(p => p.Flops).ToList();
        for (var i = 0; i < peaks.Count; i++)
        {
            var (peak, name) = peaks[i];
            var roof = plot.Add.ScatterLine(xs, xs.Select(x => Math.Log10(Math.Min(peak, Math.Pow(10, x) * c.BandwidthBytesPerSecond) / 1e9)).ToArray(), i == 0 ? Color.FromHex("#333333") : Color.FromHex("#999999"));
            roof.LineWidth = i == 0 ? 2.5f : 1.5f;
            roof.LegendText = i == 0 ? F($"roof: {peak / 1e9:N0} GFLOP/s {name}, {c.BandwidthBytesPerSecond / 1e9:N1} GB/s") : F($"{name} ceiling: {peak / 1e9:N0} GFLOP/s");
        }

        void Points(IEnumerable<LayerPrediction> ls, Color color, string label)
        {
            var list = ls.Where(l => l.Work.Flops > 0 && l.Work.Bytes > 0).ToList();
            if (list.Count == 0)
            {
                return;
            }

            var s = plot.Add.ScatterPoints(list.Select(l => Math.Log10(l.Work.Intensity)).ToArray(), list.Select(l => Math.Log10(Math.Max(l.AttainedFlops, 1) / 1e9)).ToArray(), color);
            s.MarkerSize = 9;
            s.LegendText = label;
        }

        Points(e.TopLayers.Select(r => r.AtFirst), Measured, F($"layers at b={e.Predicted[0].BatchSize} (predicted)"));
        Points(e.TopLayers.Select(r => r.AtLast), Predicted, F($"layers at b={e.Predicted[^1].BatchSize} (predicted)"));
        LogTicks(plot.Axes.Bottom);
        LogTicks(plot.Axes.Left);
        plot.Axes.AutoScale();
        var limits = plot.Axes.GetLimits();
        plot.Axes.SetLimitsY(limits.Bottom - 0.1, limits.Top + 0.35);
        plot.ShowLegend(Alignment.LowerRight);
        return Svg(plot);
    }

    private static string BoundPlot(IReadOnlyList<BatchPrediction> predicted)
    {
        var plot = NewPlot("batch size", "share of predicted time, %");
        var bars = new List<Bar>();
        var palette = new Dictionary<Bound, Color> { [Bound.Compute] = Predicted, [Bound.Memory] = Measured, [Bound.Launch] = Color.FromHex("#7f7f7f") };
        for (var i = 0; i < predicted.Count; i++)
        {
            var p = predicted[i];
            double bottom = 0;
            foreach (var bound in new[] { Bound.Compute, Bound.Memory, Bound.Launch })
            {
                var share = 100 * p.SecondsBoundBy(bound) / p.Seconds;
                bars.Add(new Bar { Position = i, ValueBase = bottom, Value = bottom + share, FillColor = palette[bound] });
                bottom += share;
            }
        }

        plot.Add.Bars(bars);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, predicted.Count).Select(i => (double)i).ToArray(),
            predicted.Select(p => p.BatchSize.ToString(CultureInfo.InvariantCulture)).ToArray());
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "compute-bound", FillColor = palette[Bound.Compute] });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "memory-bound", FillColor = palette[Bound.Memory] });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "overhead", FillColor = palette[Bound.Launch] });
        plot.Axes.SetLimitsY(0, 130);
        plot.ShowLegend(Alignment.UpperRight, Orientation.Horizontal);
        return Svg(plot);
    }

    private static Plot NewPlot(string x, string y)
    {
        ReportFont.Install(); // before the plot exists: its labels take the default font when made
        var plot = new Plot();
        plot.XLabel(x);
        plot.YLabel(y);
        plot.Grid.MajorLineColor = Color.FromHex("#e5e5e5");
        return plot;
    }

    private static void BatchTicks(Plot plot, IEnumerable<int> batches)
    {
        var list = batches.ToList();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            list.Select(b => Math.Log2(b)).ToArray(),
            list.Select(b => b.ToString(CultureInfo.InvariantCulture)).ToArray());
    }

    private static void LogTicks(IAxis axis)
    {
        axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            IntegerTicksOnly = true,
            LabelFormatter = v => Math.Pow(10, v) is var x && x >= 1 ? F($"{x:N0}") : F($"{x:0.###}"),
        };
    }

    private static string Svg(Plot plot) => plot.GetSvgXml(PlotWidth, PlotHeight);

    /// <summary>Draws the predicted curve (one value per batch) on a batch-size plot, if there is one.</summary>
    private static void AddPredicted(Plot plot, IReadOnlyList<BatchPrediction>? predicted, Func<BatchPrediction, double> value, string label, SortedSet<int> batches)
    {
        if (predicted is not { Count: > 0 })
        {
            return;
        }

        var line = plot.Add.Scatter(predicted.Select(p => Math.Log2(p.BatchSize)).ToArray(), predicted.Select(value).ToArray(), Predicted);
        line.LegendText = label;
        line.LineWidth = 1.5f;
        line.MarkerShape = MarkerShape.OpenSquare;
        line.MarkerSize = 8;
        batches.UnionWith(predicted.Select(p => p.BatchSize));
    }

    private static void Figure(StringBuilder html, string caption, string svg) =>
        html.Append("<figure>").Append(svg).Append("<figcaption>").Append(Enc(caption)).Append("</figcaption></figure>\n");

    private static void Table(StringBuilder html, string[] headers, IEnumerable<string[]> rows)
    {
        html.Append("<table><thead><tr>");
        foreach (var h in headers)
        {
            html.Append("<th>").Append(Enc(h)).Append("</th>");
        }

        html.Append("</tr></thead><tbody>\n");
        foreach (var row in rows)
        {
            html.Append("<tr>");
            foreach (var cell in row)
            {
                html.Append("<td>").Append(Enc(cell)).Append("</td>");
            }

            html.Append("</tr>\n");
        }

        html.Append("</tbody></table>\n");
    }

    private static void Context(StringBuilder html, IReadOnlyDictionary<string, string> context)
    {
        html.Append("<h2>Context</h2>\n");
        Table(html, ["what", "value"], context.Select(kv => new[] { kv.Key, kv.Value }));
    }

    private static void Head(StringBuilder html, string title)
    {
        html.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(Enc(title)).Append("</title>\n<style>\n")
            .Append("body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:2em auto;max-width:1320px;color:#222;padding:0 1em}")
            .Append("h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}")
            .Append(".sub{color:#666;margin-top:0}.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6em .9em;border-radius:4px}")
            .Append(".verdict li{margin:.35em 0;line-height:1.4}")
            .Append(".plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:4px;background:#fff}")
            .Append("figcaption{text-align:center;color:#555;font-size:.9em;padding:2px}")
            .Append("table{border-collapse:collapse;font-size:.88em;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}")
            .Append("th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}tr:nth-child(even) td{background:#fafafa}")
            .Append("footer{color:#888;font-size:.8em;margin-top:2em}\n</style></head><body>\n");
    }

    private static void Foot(StringBuilder html) =>
        html.Append("<footer>Written by Batchwise ").Append(Enc(typeof(HtmlReport).Assembly.GetName().Version?.ToString() ?? "?"))
            .Append(" on ").Append(Enc(F($"{DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC"))).Append(". One self-contained file: no external resources.</footer>\n</body></html>\n");

    private static void Write(string path, string html)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        try
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null)
            {
                Directory.CreateDirectory(dir);
            }

            File.WriteAllText(path, html, new UTF8Encoding(false));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot write the report '{path}': {e.Message}", "Pass a writable path to --report.", e);
        }
    }

    private static double Gain(Explanation e) => e.Measured.Count >= 2
        ? e.Measured[^1].Throughput / e.Measured[0].Throughput
        : e.Predicted[^1].Throughput / e.Predicted[0].Throughput;

    private static string Enc(string s) => WebUtility.HtmlEncode(s);

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
