using System.CommandLine;
using System.Globalization;
using Batchwise.Benchmarking;
using Batchwise.Cli.Reports;
using Batchwise.Engines;
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
        var model = new Argument<string>("model") { Description = "An .onnx file or zoo:NAME (e.g. zoo:resnet18, zoo:mlp?hidden=512)" };
        var engine = new Option<string>("--engine", "-e") { Description = "Engine to run on", DefaultValueFactory = _ => "ort" };
        var batchSizes = new Option<string?>("--batch-sizes", "-b") { Description = "Batch sizes to measure, e.g. 1,2,4,8 (default: powers of two up to --max-batch-size, until memory or --max-time runs out)" };
        var maxBatch = new Option<string>("--max-batch-size") { Description = "Largest batch of the default sweep", DefaultValueFactory = _ => "256" };
        var concurrency = new Option<string>("--concurrency", "-c") { Description = "Runs in flight at once, each from its own thread, e.g. 1,2,4", DefaultValueFactory = _ => "1" };
        var shape = new Option<string[]>("--shape") { Description = "Size of another dynamic dimension: SYMBOL=SIZE (seq=128) or INPUT:DIMS with `batch` for the batch axis (input_ids:batch,128); repeatable" };
        var input = new Option<string[]>("--input") { Description = "Real data for an input from a .npy file: NAME=FILE.npy (one sample, or [k, ...] samples repeated along the batch); repeatable" };
        var duration = new Option<string>("--duration", "-d") { Description = "Measurement time per stable point (three windows of a third each): 3, 3s, 500ms", DefaultValueFactory = _ => "3s" };
        var warmup = new Option<string>("--warmup") { Description = "Warm-up per point before measuring (every thread runs at least once)", DefaultValueFactory = _ => "1s" };
        var maxTime = new Option<string>("--max-time") { Description = "Time budget of the whole sweep; no new point starts after it", DefaultValueFactory = _ => "10m" };
        var seed = new Option<string>("--seed") { Description = "Seed of the random inputs", DefaultValueFactory = _ => "0" };
        var tolerance = new Option<string>("--stability-tolerance") { Description = "A point is stable when three consecutive windows' throughputs lie within this share of their mean: 0.1 or 10%", DefaultValueFactory = _ => "10%" };
        var maxWindows = new Option<string>("--max-windows") { Description = "Windows measured at most before a point is reported unstable", DefaultValueFactory = _ => "10" };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON (schema: docs/bench-schema.md), raw latency samples included" };
        var csv = new Option<string?>("--csv") { Description = "Write one CSV row per point" };
        var report = new Option<string?>("--report") { Description = "Write a self-contained HTML report (throughput and latency plots, tables) to this file" };
        var intra = new Option<string>("--intra-op-threads") { Description = "Threads inside one operator (0 = engine default)", DefaultValueFactory = _ => "0" };
        var inter = new Option<string>("--inter-op-threads") { Description = "Threads across operators (0 = engine default)", DefaultValueFactory = _ => "0" };
        var graphOpt = new Option<string>("--graph-optimization") { Description = "Graph optimisation level: disabled, basic, extended, all", DefaultValueFactory = _ => "all" };
        var ep = new Option<string>("--ep") { Description = "ONNX Runtime execution provider: cpu, cuda, tensorrt, openvino", DefaultValueFactory = _ => "cpu" };
        var precision = new Option<string>("--precision") { Description = "Arithmetic precision: fp32, fp16", DefaultValueFactory = _ => "fp32" };
        var device = new Option<string>("--device") { Description = "GPU ordinal", DefaultValueFactory = _ => "0" };
        var noCudaGraph = new Option<bool>("--no-cuda-graph") { Description = "Do not capture CUDA graphs (GPU engines)" };
        var transfers = new Option<bool>("--transfers") { Description = "Time every run end to end on a GPU engine: inputs copied from page-locked host memory to the device, compute, outputs copied back (trtexec's default; H2D, compute and D2H reported apart). Without it a run is the GPU compute alone. Use -c 2 or more to overlap one run's copies with another's compute" };
        var timedTactics = new Option<bool>("--timed-tactics") { Description = "Time cuDNN's convolution algorithms and cuBLASLt's matmul candidates when a plan is built and keep the winners in a timing cache on disk (like TensorRT's); default: the libraries' heuristics (GPU engines)" };
        var batchProfile = new Option<string?>("--batch-profile") { Description = "Batch sizes that get a plan of their own on a GPU engine, e.g. 1,8,32,64: a batch in between runs padded to the next (TensorRT's optimization profiles); default: a plan per batch size" };
        var shapeProfile = new Option<string[]>("--shape-profile") { Description = "Range of another dynamic dimension on a GPU engine: " + ShapeProfile.Syntax + "; a shape off the grid is refused; repeatable" };
        var profile = new Option<bool>("--profile") { Description = "Also print the ten slowest layers and their share of the time, and with --json FILE write every layer to FILE.layers.csv (engines with per-layer timings: cuda; others refuse)" };

        var command = new Command("bench", "Measure throughput and latency across batch sizes and concurrency, and find where batching stops paying")
        {
            model, engine, batchSizes, maxBatch, concurrency, shape, input, duration, warmup, maxTime, seed, tolerance, maxWindows, json, csv, report,
            intra, inter, graphOpt, ep, precision, device, noCudaGraph, profile, transfers, timedTactics, batchProfile, shapeProfile,
        };

        // The sweep runs off the invoking thread: System.CommandLine hooks Ctrl+C only once the action has returned its task.
        command.SetGuardedAction((parse, cancellationToken) => Task.Run(() =>
        {
            var engineOptions = new EngineOptions
            {
                IntraOpThreads = Integer(parse.GetValue(intra)!, "--intra-op-threads", 0),
                InterOpThreads = Integer(parse.GetValue(inter)!, "--inter-op-threads", 0),
                GraphOptimization = OneOf(parse.GetValue(graphOpt)!, "--graph-optimization", "disabled", "basic", "extended", "all"),
                ExecutionProvider = OneOf(parse.GetValue(ep)!, "--ep", "cpu", "cuda", "tensorrt", "openvino"),
                Precision = OneOf(parse.GetValue(precision)!, "--precision", "fp32", "fp16") == "fp16" ? Precision.Fp16 : Precision.Fp32,
                DeviceId = Integer(parse.GetValue(device)!, "--device", 0),
                UseCudaGraph = !parse.GetValue(noCudaGraph),
                Profile = parse.GetValue(profile),
                IncludeTransfers = parse.GetValue(transfers),
                TimedTactics = parse.GetValue(timedTactics),
                BatchProfiles = parse.GetValue(batchProfile) is { } bp ? IntegerList(bp, "--batch-profile", "1,8,32,64") : [],
                ShapeProfiles = [.. (parse.GetValue(shapeProfile) ?? []).Select(ShapeProfile.Parse)],
            };
            var options = new BenchmarkOptions
            {
                BatchSizes = parse.GetValue(batchSizes) is { } b ? IntegerList(b, "--batch-sizes", "1,2,4,8") : null,
                MaxBatchSize = Integer(parse.GetValue(maxBatch)!, "--max-batch-size", 1),
                Concurrency = IntegerList(parse.GetValue(concurrency)!, "--concurrency", "1,2,4"),
                Duration = Duration(parse.GetValue(duration)!, "--duration"),
                Warmup = Duration(parse.GetValue(warmup)!, "--warmup", allowZero: true),
                MaxTime = Duration(parse.GetValue(maxTime)!, "--max-time"),
                Seed = Integer(parse.GetValue(seed)!, "--seed", int.MinValue),
                StabilityTolerance = Fraction(parse.GetValue(tolerance)!, "--stability-tolerance"),
                MaxWindows = Integer(parse.GetValue(maxWindows)!, "--max-windows", 3),
                Shapes = ShapeBindings.Parse(parse.GetValue(shape) ?? []),
                Data = InputGenerator.ReadDataFiles(parse.GetValue(input) ?? []),
            };
            options.Validate();
            var jsonPath = parse.GetValue(json);
            var csvPath = parse.GetValue(csv);
            var reportPath = parse.GetValue(report);
            if (reportPath is not null)
            {
                ReportFile.CheckWritable(reportPath, "--report");
            }

            if (jsonPath is not null)
            {
                ReportFile.CheckWritable(jsonPath, "--json");
            }

            if (csvPath is not null)
            {
                ReportFile.CheckWritable(csvPath, "--csv");
            }

            var runner = new BenchmarkRunner(EngineRegistry.Create(parse.GetValue(engine)!), engineOptions);
            var spec = parse.GetValue(model)!;
            var onnx = ModelSource.Load(spec);

            // Reports are rewritten after every point, so Ctrl+C (or a crash) never loses what was measured.
            void Save(BenchmarkResult r)
            {
                if (jsonPath is not null)
                {
                    BenchmarkJson.Write(r, jsonPath);
                }

                if (csvPath is not null)
                {
                    BenchmarkCsv.Write(r, csvPath);
                }

                if (reportPath is not null)
                {
                    HtmlReport.WriteBench(reportPath, r);
                }
            }

            // Per-layer timings first: an engine without them fails here, before a long sweep.
            IReadOnlyList<LayerProfile> profiles = [];
            if (engineOptions.Profile)
            {
                profiles = LayerProfile.Measure(EngineRegistry.Create(parse.GetValue(engine)!), engineOptions, onnx, options, options.BatchSizes ?? [1]);
                if (jsonPath is not null)
                {
                    // Every layer, not just the top ten: batch, order, layer, mean ms, share of the layer-by-layer total.
                    var layersPath = Path.ChangeExtension(jsonPath, ".layers.csv");
                    File.WriteAllLines(layersPath, new[] { "batch,order,layer,ms,share" }.Concat(profiles.SelectMany(p => p.Layers.Select((l, i) =>
                        string.Create(CultureInfo.InvariantCulture, $"{p.BatchSize},{i},\"{l.Layer.Replace("\"", "\"\"", StringComparison.Ordinal)}\",{l.Milliseconds:F5},{(p.TotalMilliseconds > 0 ? l.Milliseconds / p.TotalMilliseconds : 0):F4}")))));
                }
            }

            var result = RunWithProgress(runner, onnx, spec, options, Save, cancellationToken);
            Save(result);
            if (Console.IsOutputRedirected)
            {
                // Going to a file or pipe: no terminal width to respect, so do not wrap the table.
                AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
            }

            BenchmarkTable.Write(AnsiConsole.Console, result);
            foreach (var p in profiles)
            {
                WriteProfile(p);
            }

            foreach (var path in new[] { jsonPath, csvPath, reportPath }.OfType<string>())
            {
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}");
            }

            return result.StopReason == StopReason.Cancelled ? 130 : 0;
        }, CancellationToken.None));
        return command;
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

    private static void WriteProfile(LayerProfile profile)
    {
        var table = new Table().Title(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"b={profile.BatchSize}: slowest layers (CUDA events, layer by layer, mean of {profile.Runs} runs; total {profile.TotalMilliseconds:F3} ms over {profile.Layers.Count} layers)")));
        table.AddColumn("#", c => c.RightAligned()).AddColumn("layer").AddColumn("ms", c => c.RightAligned()).AddColumn("share", c => c.RightAligned()).AddColumn("cumulative", c => c.RightAligned());
        var cumulative = 0.0;
        foreach (var ((layer, share), i) in profile.Top(10).Select((t, i) => (t, i)))
        {
            cumulative += share;
            table.AddRow((i + 1).ToString(CultureInfo.InvariantCulture), Markup.Escape(layer.Layer), layer.Milliseconds.ToString("F4", CultureInfo.InvariantCulture), share.ToString("P1", CultureInfo.InvariantCulture), cumulative.ToString("P1", CultureInfo.InvariantCulture));
        }

        AnsiConsole.Write(table);
    }

    internal static int Integer(string text, string option, int min)
    {
        if (int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min)
        {
            return value;
        }

        throw new BatchwiseException($"{option} '{text}' is not an integer{(min > int.MinValue ? $" of at least {min}" : string.Empty)}", $"Write e.g. {option} {Math.Max(min, 1)}.");
    }

    internal static List<int> IntegerList(string text, string option, string example)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var values = new List<int>();
        foreach (var part in parts)
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v <= 0)
            {
                throw new BatchwiseException($"{option} '{text}': '{part}' is not a positive integer", $"Write a comma-separated list, e.g. {option} {example}.");
            }

            values.Add(v);
        }

        return values;
    }

    internal static string OneOf(string text, string option, params string[] allowed)
    {
        var value = text.Trim().ToLowerInvariant();
        return allowed.Contains(value) ? value : throw new BatchwiseException($"{option} '{text}' is not one of {string.Join(", ", allowed)}", $"Write e.g. {option} {allowed[0]}.");
    }

    internal static double Fraction(string text, string option)
    {
        var t = text.Trim();
        var percent = t.EndsWith('%');
        if (double.TryParse(percent ? t[..^1] : t, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
        {
            return percent ? v / 100 : v;
        }

        throw new BatchwiseException($"{option} '{text}' is not a number", $"Write a fraction or a percentage, e.g. {option} 0.1 or {option} 10%.");
    }

    internal static TimeSpan Duration(string text, string option, bool allowZero = false)
    {
        var t = text.Trim().ToLowerInvariant();
        var (number, scale) = t.EndsWith("ms", StringComparison.Ordinal) ? (t[..^2], 0.001)
            : t.EndsWith('s') ? (t[..^1], 1.0)
            : t.EndsWith('m') ? (t[..^1], 60.0)
            : t.EndsWith('h') ? (t[..^1], 3600.0)
            : (t, 1.0);
        if (double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) && (v > 0 || (allowZero && v == 0)))
        {
            return TimeSpan.FromSeconds(v * scale);
        }

        throw new BatchwiseException($"{option} '{text}' is not a {(allowZero ? "non-negative" : "positive")} duration", $"Write seconds or a unit, e.g. {option} 3, {option} 500ms, {option} 2m.");
    }
}
