using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;
using Batchwise.Cli.Options;
using Batchwise.Reports;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise explain MODEL`: why batching helps or not, from the graph and the device's measured ceilings.</summary>
public static class ExplainCommand
{
    /// <summary>Creates the explain command.</summary>
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "An .onnx file or zoo:NAME[?options]" };
        var batchSizes = SharedOptions.BatchSizes([1, 2, 4, 8, 16, 32]);
        var inputSize = SharedOptions.InputSize();
        var shape = SharedOptions.Shape();
        var bench = new Option<string?>("--bench") { Description = "A measured sweep from `batchwise bench --json` (or an earlier `explain --json` report) to explain (otherwise a short sweep runs)", HelpName = "FILE" };
        var noMeasure = new Option<bool>("--no-measure") { Description = "Predict only: run no measured sweep" };
        var duration = SharedOptions.Duration(TimeSpan.FromSeconds(1));
        var top = CliOption.Integer("--top", "How many of the most costly layers to list", 1, 10);
        var recalibrate = SharedOptions.Recalibrate();
        var ceilings = new Option<string?>("--ceilings-file") { Description = "Device ceilings from FILE (a ceilings cache file, $BATCHWISE_CACHE_DIR/ceilings/*.json, perhaps measured on another machine) instead of this machine's; with --no-measure or --bench no device is needed: explain a model for a GPU you do not have", HelpName = "FILE" };
        var command = new Command("explain", "Why batching helps or not: per-layer FLOPs, bytes and GEMM sizes against the device's measured ceilings, predicted beside measured throughput, and a verdict")
        {
            model, batchSizes, inputSize, shape, bench, noMeasure, duration, top, recalibrate, ceilings,
        };
        var engine = EngineOptionGroup.AddTo(command);
        var reports = ReportOptions.AddTo(command, withHtml: true);

        command.SetGuardedAction((parse, ct) =>
        {
            var targets = reports.Read(parse);
            var request = new ExplainRequest
            {
                Model = parse.GetValue(model)!,
                Engine = engine.CreateEngine(parse),
                Options = engine.Read(parse),
                BatchSizes = parse.GetValue(batchSizes)!,
                Size = parse.GetValue(inputSize),
                Shapes = Benchmarking.ShapeBindings.Parse(parse.GetValue(shape) ?? []),
                BenchFile = parse.GetValue(bench),
                NoMeasure = parse.GetValue(noMeasure),
                Duration = parse.GetValue(duration),
                Top = parse.GetValue(top),
                Recalibrate = parse.GetValue(recalibrate),
                CeilingsFile = parse.GetValue(ceilings),
            };
            var verbose = parse.GetValue(CommonOptions.Verbose);
            var result = ExplainRun.Execute(request, line => Console.Error.WriteLine(line), line =>
            {
                if (verbose)
                {
                    Console.Error.WriteLine(line);
                }
            }, ct);
            foreach (var warning in result.Warnings)
            {
                CommonOptions.WriteError("warning: " + warning);
            }

            Print(targets.HumanConsole, result.Explanation, result.CeilingsFromCache, result.CeilingsPath);
            targets.WriteJson(() => ExplanationJson.ToJson(result.Explanation, result.Context));
            targets.WriteCsv(() => ExplanationCsv.ToCsv(result.Explanation));
            if (targets.Html is { } html)
            {
                HtmlReport.WriteExplain(html, result.Explanation, result.Context);
            }

            targets.SayWritten();
            return Task.FromResult(0);
        });
        return command;
    }

    private static void Print(IAnsiConsole console, Explanation e, bool fromCache, string cachePath)
    {
        if (Console.IsOutputRedirected || !ReferenceEquals(console, AnsiConsole.Console))
        {
            // Going to a file or pipe: no terminal width to respect, so do not wrap the tables.
            console.Profile.Width = Math.Max(console.Profile.Width, 160);
        }

        console.MarkupLine($"[bold]{Markup.Escape(e.ModelName)}[/]  {Markup.Escape(e.Input)}  ({Units.Flops(e.FlopsPerSample)} per sample)");
        console.MarkupLine($"device: {Markup.Escape(e.Ceilings.Summary())} [grey]({(fromCache ? "cached" : "measured now")}: {Markup.Escape(cachePath)})[/]");
        if (e.Ceilings.RateCurve.Count > 0)
        {
            var c = e.Ceilings;
            console.MarkupLine("[grey]" + Markup.Escape(F($"{c.Precision} rate by N (share of best, the efficiency the prediction uses): ") + string.Join(", ", c.RateCurve.Select(p => F($"N={p.N:N0} {Units.FlopRate(p.Flops)} ({c.Efficiency(p.N):P0})")))) + "[/]");
        }

        var curve = new Table().AddColumns("batch", "predicted /s", "measured /s", "error", "predicted latency", "measured latency", "compute / memory / overhead");
        foreach (var p in e.Predicted)
        {
            var m = e.Measured.FirstOrDefault(x => x.BatchSize == p.BatchSize);
            curve.AddRow(
                p.BatchSize.ToString(CultureInfo.InvariantCulture),
                Units.Rate(p.Throughput),
                m is null ? "-" : Units.Rate(m.Throughput),
                m is null ? "-" : F($"{(p.Throughput - m.Throughput) / m.Throughput:+0%;-0%;0%}"),
                Units.Duration(p.Seconds),
                m is null ? "-" : Units.Duration(m.LatencyMedianSeconds),
                F($"{p.SecondsBoundBy(Bound.Compute) / p.Seconds:P0} / {p.SecondsBoundBy(Bound.Memory) / p.Seconds:P0} / {p.SecondsBoundBy(Bound.Launch) / p.Seconds:P0}"));
        }

        console.Write(curve);
        int b0 = e.Predicted[0].BatchSize, b1 = e.Predicted[^1].BatchSize;
        var layers = new Table().AddColumns("layer", "op", F($"FLOPs b={b0}"), F($"bytes b={b0}"), F($"FLOP/B b={b0}"), F($"FLOP/B b={b1}"), F($"M / N / K b={b0}"), "fills at b", F($"bound b={b0}"), F($"bound b={b1}"), F($"share b={b1} (all alike)"));
        foreach (var r in e.TopLayers)
        {
            layers.AddRow(
                Markup.Escape(r.Label),
                Markup.Escape(r.AtFirst.Work.OpType),
                Units.Flops(r.AtFirst.Work.Flops),
                Units.Bytes(r.AtFirst.Work.Bytes),
                F($"{r.AtFirst.Work.Intensity:N1}"),
                F($"{r.AtLast.Work.Intensity:N1}"),
                r.AtFirst.Work.GemmText,
                r.SaturationBatch?.ToString(CultureInfo.InvariantCulture) ?? "-",
                r.AtFirst.Bound.ToString().ToLowerInvariant(),
                r.AtLast.Bound.ToString().ToLowerInvariant(),
                F($"{r.ShareAtLast:P1}"));
        }

        console.Write(layers);
        console.MarkupLine("[bold]Verdict[/]");
        foreach (var line in e.Verdict)
        {
            console.MarkupLine("  • " + Markup.Escape(line));
        }
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
