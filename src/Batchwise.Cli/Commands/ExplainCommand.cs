using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Reports;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise explain MODEL`: why batching helps or not, from the graph and the device's measured ceilings.</summary>
public static class ExplainCommand
{
    /// <summary>Creates the explain command.</summary>
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "An .onnx file or zoo:NAME[?options]" };
        var engine = new Option<string>("--engine", "-e") { Description = "Engine: ort (ONNX Runtime, CPU) or another registered engine", DefaultValueFactory = _ => "ort" };
        var batchSizes = new Option<string>("--batch-sizes", "-b") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "1,2,4,8,16,32" };
        var inputSize = new Option<string?>("--input-size") { Description = "Input size: 224 or WIDTHxHEIGHT for images, a length for sequences (dynamic axes only)" };
        var shape = new Option<string[]>("--shape") { Description = "Size of another dynamic dimension: SYMBOL=SIZE (seq=128) or INPUT:DIMS with `batch` for the batch axis (x:batch,3,640,640), as bench takes it; repeatable" };
        var bench = new Option<string?>("--bench") { Description = "A measured sweep from `batchwise bench --json` to explain (otherwise a short sweep runs)" };
        var noMeasure = new Option<bool>("--no-measure") { Description = "Predict only: run no measured sweep" };
        var duration = new Option<double>("--duration") { Description = "Seconds to measure each batch size in the short sweep", DefaultValueFactory = _ => 1.0 };
        var top = new Option<int>("--top") { Description = "How many of the most costly layers to list", DefaultValueFactory = _ => 10 };
        var json = new Option<string?>("--json") { Description = "Write the explanation as JSON (schema batchwise.explain, docs/explain.md)" };
        var report = new Option<string?>("--report") { Description = "Write a self-contained HTML report (plots, roofline, tables) to this file" };
        var recalibrate = new Option<bool>("--recalibrate") { Description = "Measure the device ceilings again instead of using the cached ones" };
        var threads = new Option<int>("--threads") { Description = "Threads inside one operator (ONNX Runtime); 0 = engine default", DefaultValueFactory = _ => 0 };
        var precision = new Option<Precision>("--precision") { Description = "Arithmetic precision to measure and predict: fp32 or fp16 (the fp16 GEMM ceiling; GPU engines)", DefaultValueFactory = _ => Precision.Fp32 };
        var tf32 = new Option<bool>("--tf32") { Description = "fp32 with TF32 tensor cores: the engine uses them and the prediction takes the TF32 GEMM ceiling (GPU engines)" };
        var device = new Option<int>("--device") { Description = "GPU ordinal (GPU engines)", DefaultValueFactory = _ => 0 };
        var noCudaGraph = new Option<bool>("--no-cuda-graph") { Description = "Launch kernels one by one instead of replaying a CUDA graph; the prediction takes the per-launch cost (GPU engines)" };

        var command = new Command("explain", "Why batching helps or not: per-layer FLOPs, bytes and GEMM sizes against the device's measured ceilings, predicted beside measured throughput, and a verdict")
        {
            model, engine, batchSizes, inputSize, shape, bench, noMeasure, duration, top, json, report, recalibrate, threads, precision, tf32, device, noCudaGraph,
        };

        command.SetGuardedAction((parse, ct) =>
        {
            var spec = parse.GetValue(model)!;
            var batches = ParseBatchSizes(parse.GetValue(batchSizes)!);
            var size = parse.GetValue(inputSize) is { } s ? InputSize.Parse(s) : null;
            var topN = parse.GetValue(top);
            if (topN < 1)
            {
                throw new BatchwiseException($"--top {topN} lists nothing", "Pass --top 1 or more.");
            }

            var seconds = parse.GetValue(duration);
            if (seconds is <= 0 or > 600 || double.IsNaN(seconds))
            {
                throw new BatchwiseException($"--duration {seconds} is out of range", "Pass seconds per batch size between 0.01 and 600, e.g. --duration 1.");
            }

            var verbose = parse.GetValue(CommonOptions.Verbose);
            void Log(string line)
            {
                if (verbose)
                {
                    Console.Error.WriteLine(line);
                }
            }

            var original = ModelSource.Load(spec);

            // Every dynamic dimension but the batch gets a size from --shape or --input-size, never a silent default:
            // the same rule, error and syntax as bench.
            var bindings = ShapeBindings.Parse(parse.GetValue(shape) ?? []);
            if (size is not null && bindings.Text.Count > 0)
            {
                throw new BatchwiseException("--input-size and --shape both size the input", "Give the size once: --shape (any model) or --input-size (images and sequences).");
            }

            var onnx = size is null && (bindings.Text.Count > 0 || original.Inputs.Any(i => i.Shape.Skip(1).Any(d => d.IsDynamic))) ? bindings.Pin(original) : original;
            var eng = EngineRegistry.Create(parse.GetValue(engine)!);
            if (parse.GetValue(device) < 0)
            {
                throw new BatchwiseException($"--device {parse.GetValue(device)} is not a GPU ordinal", "Pass 0 or more; `batchwise devices` lists them.");
            }

            var options = new EngineOptions
            {
                IntraOpThreads = parse.GetValue(threads),
                Precision = parse.GetValue(precision),
                AllowTf32 = parse.GetValue(tf32),
                DeviceId = parse.GetValue(device),
                UseCudaGraph = !parse.GetValue(noCudaGraph),
            };
            var (measuredCeilings, fromCache, cachePath) = DeviceCeilingsSource.Get(eng, options, CeilingsCache.Default(), parse.GetValue(recalibrate), line => Console.Error.WriteLine(line), ct);
            Log($"ceilings {(fromCache ? "from" : "written to")} {cachePath}");

            // The cache holds every precision the probe measured; the prediction takes the one these options run in.
            var ceilings = measuredCeilings.For(options);

            // The cuda engine fuses epilogues (BN folded, ReLU and residual Add in cuDNN's call, other chains in one kernel).
            var fuses = string.Equals(eng.Name, "cuda", StringComparison.OrdinalIgnoreCase);
            var work = ModelWork.Analyze(onnx, size, fuses);
            IReadOnlyList<MeasuredPoint> measured = [];
            if (parse.GetValue(bench) is { } benchFile)
            {
                var contents = BenchFile.Read(benchFile);
                measured = contents.Points;
                if (!string.Equals(contents.Engine, eng.Name, StringComparison.OrdinalIgnoreCase) || contents.Device != ceilings.Device)
                {
                    CommonOptions.WriteError($"warning: {benchFile} was measured with {contents.Engine} on {contents.Device}; the prediction is for {eng.Name} on {ceilings.Device}");
                }
            }
            else if (!parse.GetValue(noMeasure))
            {
                measured = MeasuredSweep.Run(eng, options, onnx, spec, batches, size, seconds, Log, ct);
            }

            var explanation = Explainer.Explain(work, ceilings, measured.Count > 0 && parse.GetValue(bench) is not null ? [] : batches, measured, topN, SmallerInput(spec, original, size ?? PinnedImageSize(original, onnx), fuses, Log), parse.GetValue(bench) is null ? MeasuredSweep.LoadAverage() : null);
            Print(explanation, fromCache, cachePath);
            var description = eng.Describe(options);
            var context = new Dictionary<string, string>
            {
                ["model"] = spec,
                ["input"] = explanation.Input,
                ["engine"] = $"{description.Engine} {description.Version}",
                ["ceilings used"] = ceilings.Precision + " GEMM" + (ceilings.Launch.Length > 0 ? $", launch costs of a {ceilings.Launch}" : string.Empty),
                ["device"] = description.Device,
                ["machine"] = $"{HostInfo.MachineName}, {HostInfo.LogicalCores} logical cores, {HostInfo.OperatingSystem}",
                ["runtime"] = HostInfo.Runtime,
                ["measured sweep"] = parse.GetValue(bench) is { } bf ? $"from {bf}" : measured.Count > 0 ? $"short sweep, {seconds.ToString(CultureInfo.InvariantCulture)} s per batch size" : "none (--no-measure)",
                ["load average"] = explanation.LoadAverage is { } la ? la.ToString("N1", CultureInfo.InvariantCulture) : "not recorded",
                ["date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
            };
            if (parse.GetValue(json) is { } jsonPath)
            {
                ExplanationJson.Write(jsonPath, explanation, context);
                Console.WriteLine($"wrote {jsonPath}");
            }

            if (parse.GetValue(report) is { } reportPath)
            {
                HtmlReport.WriteExplain(reportPath, explanation, context);
                Console.WriteLine($"wrote {reportPath}");
            }

            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Parses "1,2,4,8" into distinct positive batch sizes.</summary>
    internal static IReadOnlyList<int> ParseBatchSizes(string text)
    {
        var result = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out var b) || b < 1 || b > 65536)
            {
                throw new BatchwiseException($"Batch size '{part}' is not a positive integer", "Write e.g. --batch-sizes 1,2,4,8,16.");
            }

            result.Add(b);
        }

        return result.Count > 0 ? result.Distinct().Order().ToList() : throw new BatchwiseException("No batch sizes given", "Write e.g. --batch-sizes 1,2,4,8,16.");
    }

    /// <summary>The image size --shape gave a model with a dynamic height and width, or null.</summary>
    private static InputSize? PinnedImageSize(OnnxModel original, OnnxModel pinned)
    {
        var i = original.Inputs.ToList().FindIndex(x => x.Shape.Count == 4 && (x.Shape[2].IsDynamic || x.Shape[3].IsDynamic));
        return i < 0 ? null : new InputSize((int)pinned.Inputs[i].Shape[3].Value!.Value, (int)pinned.Inputs[i].Shape[2].Value!.Value);
    }

    /// <summary>The same model at half the image size (for the input-size lever), where the model allows it.</summary>
    private static (InputSize From, InputSize To, ModelWork Work)? SmallerInput(string spec, OnnxModel onnx, InputSize? size, bool fuses, Action<string> log)
    {
        var image = onnx.Inputs.FirstOrDefault(i => i.Shape.Count == 4);
        if (image is null)
        {
            return null;
        }

        var from = size ?? new InputSize((int)(image.Shape[3].Value ?? InputShapes.DefaultImageSize), (int)(image.Shape[2].Value ?? InputShapes.DefaultImageSize));
        var to = new InputSize(Math.Max(1, from.Width / 2), Math.Max(1, from.Height / 2));
        if (from.Width < 64 || from.Height < 64)
        {
            return null;
        }

        try
        {
            if (!image.Shape[2].IsDynamic && spec.StartsWith(ModelZoo.Prefix, StringComparison.OrdinalIgnoreCase))
            {
                // A fixed-size zoo model: build it again at the smaller size (size=SIDE, or HEIGHTxWIDTH).
                var q = spec.IndexOf('?', StringComparison.Ordinal);
                var kept = q < 0 ? [] : spec[(q + 1)..].Split('&').Where(p => !p.StartsWith("size=", StringComparison.OrdinalIgnoreCase));
                var sizeOption = to.Width == to.Height ? $"size={to.Width}" : $"size={to.Height}x{to.Width}";
                var smaller = (q < 0 ? spec : spec[..q]) + "?" + string.Join('&', kept.Append(sizeOption));
                return (from, to, ModelWork.Analyze(ModelZoo.Build(smaller), null, fuses));
            }

            return image.Shape[2].IsDynamic ? (from, to, ModelWork.Analyze(onnx, to, fuses)) : null;
        }
        catch (BatchwiseException e)
        {
            log($"input-size lever skipped: {e.Message}");
            return null;
        }
    }

    private static void Print(Explanation e, bool fromCache, string cachePath)
    {
        var console = AnsiConsole.Console;
        if (Console.IsOutputRedirected)
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
