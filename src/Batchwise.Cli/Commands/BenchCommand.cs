using System.CommandLine;
using System.Globalization;
using Batchwise.Benchmarking;
using Batchwise.Cli.Options;
using Batchwise.Cli.Reports;
using Batchwise.Reports;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise bench MODEL`: sweep batch size x concurrency on an engine and find the knee.</summary>
public static class BenchCommand
{
    /// <summary>Creates the bench command.</summary>
    public static Command Create()
    {
        var flags = new Flags();
        var command = new Command("bench", "Measure throughput and latency across batch sizes and concurrency, and find where batching stops paying (default sweep: powers of two up to --max-batch-size, until memory or --max-time runs out)");
        flags.AddTo(command);

        // The sweep runs off the invoking thread: System.CommandLine hooks Ctrl+C only once the action has returned its task.
        command.SetGuardedAction((parse, cancellationToken) => Task.Run(() => Run(flags, parse, cancellationToken), CancellationToken.None));
        return command;
    }

    private static int Run(Flags flags, ParseResult parse, CancellationToken cancellationToken)
    {
        var engineOptions = flags.Engine.Read(parse) with { Profile = parse.GetValue(flags.Profile), IncludeTransfers = parse.GetValue(flags.Transfers) };
        var options = flags.ReadBenchmark(parse);
        var reports = flags.Reports.Read(parse);
        var spec = parse.GetValue(flags.Model)!;

        // The engine's device context starts while the model file is read (the cold start counts from that moment).
        flags.Engine.CreateEngine(parse).Prestart(engineOptions);
        var onnx = ModelSource.Load(spec);
        engineOptions = Transforms.CalibratedInt8.OptionsFor(engineOptions, onnx);

        // Per-layer timings first: an engine without them fails here, before a long sweep.
        var profiles = engineOptions.Profile
            ? LayerProfile.Measure(flags.Engine.CreateEngine(parse), engineOptions, onnx, options, options.BatchSizes ?? [1])
            : [];
        var runner = new BenchmarkRunner(flags.Engine.CreateEngine(parse), engineOptions)
        {
            PlanBuilt = parse.GetValue(CommonOptions.Verbose)
                ? b => Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plan built for {b.Shapes} in {b.Seconds * 1000:F1} ms ({b.KernelsCompiled} kernels compiled, {b.KernelsLoaded} loaded, {b.Steps} steps{(b.SideSteps > 0 ? $" ({b.SideSteps} on a second stream)" : string.Empty)}{string.Concat(b.Phases.Select(p => $", {p.Key} {p.Value * 1000:F1} ms"))}{(b.Details.Count == 0 ? string.Empty : "; within them: " + string.Join(", ", b.Details.Select(p => $"{p.Key} {p.Value * 1000:F1} ms")))})"))
                : null,
        };

        // Files are rewritten after every point, so Ctrl+C (or a crash) never loses what was measured; standard output
        // gets one document, at the end.
        var files = reports with
        {
            Json = reports.Json == ReportTargets.StandardOutput ? null : reports.Json,
            Csv = reports.Csv == ReportTargets.StandardOutput ? null : reports.Csv,
        };
        var result = RunWithProgress(runner, onnx, spec, options, r => Save(files, r), cancellationToken);
        if (parse.GetValue(CommonOptions.Verbose) && result.ColdStart is { Spans.Count: > 0 } cold)
        {
            Console.Error.WriteLine("cold start spans: " + string.Join(", ", cold.Spans.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {p.Value * 1000:F1} ms"))));
        }

        Save(reports, result);
        if (profiles.Count > 0 && files.Json is { } jsonPath)
        {
            ReportFile.WriteText(Path.ChangeExtension(jsonPath, ".layers.csv"), BenchmarkCsv.LayersToCsv(profiles));
        }

        var console = reports.HumanConsole;
        if (Console.IsOutputRedirected || reports.TakesStandardOutput)
        {
            // Going to a file or pipe: no terminal width to respect, so do not wrap the table.
            console.Profile.Width = Math.Max(console.Profile.Width, 160);
        }

        BenchmarkTable.Write(console, result);
        foreach (var p in profiles)
        {
            console.Write(ProfileTable(p));
        }

        reports.SayWritten();
        return result.StopReason == StopReason.Cancelled ? 130 : 0;
    }

    private static void Save(ReportTargets reports, BenchmarkResult result)
    {
        reports.WriteJson(() => BenchmarkJson.ToJson(result));
        reports.WriteCsv(() => BenchmarkCsv.ToCsv(result));
        if (reports.Html is { } html)
        {
            HtmlReport.WriteBench(html, result);
        }
    }

    private static BenchmarkResult RunWithProgress(BenchmarkRunner runner, Batchwise.Onnx.OnnxModel model, string spec, BenchmarkOptions options, Action<BenchmarkResult> save, CancellationToken cancellationToken)
    {
        var interactive = !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!interactive)
        {
            return runner.Run(model, spec, options, p =>
            {
                if (p.SoFar is { } soFar)
                {
                    save(soFar);
                    var point = soFar.Points[^1];
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{p.PointIndex + 1}/{p.PointCount}] b={p.BatchSize} c={p.Concurrency}: {BenchmarkTable.Number(point.Throughput)} samples/s, p50 {BenchmarkTable.Number(point.LatencyMs.P50)} ms{(point.Stable ? string.Empty : " (unstable)")}"));
                }
            }, cancellationToken);
        }

        BenchmarkResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("loading", maxValue: 1);
                result = runner.Run(model, spec, options, p =>
                {
                    task.MaxValue = p.PointCount;
                    var last = p.SoFar is { } s ? $" — last {BenchmarkTable.Number(s.Points[^1].Throughput)} samples/s" : string.Empty;
                    task.Description = Markup.Escape($"b={p.BatchSize} c={p.Concurrency} {p.Phase}{last}");
                    if (p.SoFar is { } soFar)
                    {
                        task.Value = p.PointIndex + 1;
                        save(soFar);
                    }
                }, cancellationToken);
            });
        return result!;
    }

    /// <summary>The whole run's time beside the layers' total, and what a layer's time holds past its own work where the total exceeds it.</summary>
    private static string WholeRun(LayerProfile profile) => profile.WholeRunMilliseconds is not { } whole ? string.Empty
        : profile.TotalMilliseconds > whole * 1.05
            ? string.Create(CultureInfo.InvariantCulture, $", against {whole:F3} ms for the whole run unprofiled: a layer's time here holds about {(profile.TotalMilliseconds - whole) * 1000 / profile.Layers.Count:F1} µs of events and lost launch overlap")
            : string.Create(CultureInfo.InvariantCulture, $"; the whole run unprofiled {whole:F3} ms");

    private static Table ProfileTable(LayerProfile profile)
    {
        var table = new Table().Title(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"b={profile.BatchSize}: slowest layers (CUDA events, layer by layer, mean of {profile.Runs} runs; total {profile.TotalMilliseconds:F3} ms over {profile.Layers.Count} layers{WholeRun(profile)})")));
        table.AddColumn("#", c => c.RightAligned()).AddColumn("layer").AddColumn("ms", c => c.RightAligned()).AddColumn("share", c => c.RightAligned()).AddColumn("cumulative", c => c.RightAligned());
        var cumulative = 0.0;
        foreach (var ((layer, share), i) in profile.Top(10).Select((t, i) => (t, i)))
        {
            cumulative += share;
            table.AddRow((i + 1).ToString(CultureInfo.InvariantCulture), Markup.Escape(layer.Layer), layer.Milliseconds.ToString("F4", CultureInfo.InvariantCulture), share.ToString("P1", CultureInfo.InvariantCulture), cumulative.ToString("P1", CultureInfo.InvariantCulture));
        }

        return table;
    }

    /// <summary>bench's flags: the engine group, the sweep, the reports.</summary>
    private sealed class Flags
    {
        public Argument<string> Model { get; } = new("model") { Description = "An .onnx file or zoo:NAME (e.g. zoo:resnet18, zoo:mlp?hidden=512)" };

        public EngineOptionGroup Engine { get; } = new();

        public Option<int[]?> BatchSizes { get; } = SharedOptions.BatchSizes(null);

        public Option<int?> MaxBatchSize { get; } = SharedOptions.MaxBatchSize();

        public Option<int[]?> Concurrency { get; } = SharedOptions.Concurrency([1]);

        public Option<string[]> Shape { get; } = SharedOptions.Shape();

        public Option<string[]> Input { get; } = SharedOptions.Input();

        public Option<TimeSpan> Duration { get; } = SharedOptions.Duration(TimeSpan.FromSeconds(3));

        public Option<TimeSpan> Warmup { get; } = SharedOptions.Warmup(TimeSpan.FromSeconds(1));

        public Option<TimeSpan> MaxTime { get; } = CliOption.Duration("--max-time", "Time budget of the whole sweep; no new point starts after it", TimeSpan.FromMinutes(10), allowZero: false);

        public Option<int> Seed { get; } = SharedOptions.Seed();

        public Option<double> StabilityTolerance { get; } = SharedOptions.StabilityTolerance();

        public Option<int> MaxWindows { get; } = CliOption.Integer("--max-windows", "Windows measured at most before a point is reported unstable", 3, 10);

        public Option<int> Queue { get; } = CliOption.Integer("--queue", "Runs each worker enqueues back to back before it waits (engines with a device queue: cuda). Above 1 the GPU never idles for the host between runs, as a CUDA-graph replay loop is timed (PyTorch's, trtexec's throughput); a latency sample is then a queue's mean run. 1 waits for every run", 1, 1);

        public Option<bool> Profile { get; } = new("--profile") { Description = "Also print the ten slowest layers and their share of the time, and with --json FILE write every layer to FILE.layers.csv (engines with per-layer timings: cuda; others refuse)" };

        public Option<bool> Transfers { get; } = new("--transfers") { Description = "Time every run end to end on a GPU engine: inputs copied from page-locked host memory to the device, compute, outputs copied back (trtexec's default; H2D, compute and D2H reported apart). Without it a run is the GPU compute alone. Use -c 2 or more to overlap one run's copies with another's compute" };

        public ReportOptions Reports { get; private set; } = null!;

        public void AddTo(Command command)
        {
            command.Arguments.Add(Model);
            foreach (var option in Engine.All)
            {
                command.Options.Add(option);
            }

            foreach (var option in new Option[] { BatchSizes, MaxBatchSize, Concurrency, Shape, Input, Duration, Warmup, MaxTime, Seed, StabilityTolerance, MaxWindows, Queue, Profile, Transfers })
            {
                command.Options.Add(option);
            }

            Reports = ReportOptions.AddTo(command, withHtml: true);
        }

        public BenchmarkOptions ReadBenchmark(ParseResult parse)
        {
            var options = new BenchmarkOptions
            {
                BatchSizes = parse.GetValue(BatchSizes) is { Length: > 0 } sizes ? sizes : null, // none given: the default sweep
                MaxBatchSize = parse.GetValue(MaxBatchSize) ?? 256,
                Concurrency = parse.GetValue(Concurrency)!,
                Duration = parse.GetValue(Duration),
                Warmup = parse.GetValue(Warmup),
                MaxTime = parse.GetValue(MaxTime),
                Seed = parse.GetValue(Seed),
                StabilityTolerance = parse.GetValue(StabilityTolerance),
                MaxWindows = parse.GetValue(MaxWindows),
                Queue = parse.GetValue(Queue),
                Shapes = ShapeBindings.Parse(parse.GetValue(Shape) ?? []),
                Data = InputGenerator.ReadDataFiles(parse.GetValue(Input) ?? []),
            };
            options.Validate();
            return options;
        }
    }
}
