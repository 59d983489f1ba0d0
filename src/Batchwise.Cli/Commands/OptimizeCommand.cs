using System.CommandLine;
using System.Globalization;
using Batchwise.Cli.Options;
using Batchwise.Reports;
using Batchwise.Transforms;
using Batchwise.Zoo;
using Spectre.Console;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise optimize MODEL -o OUT.onnx [--opset N] [--input-size HxW] [--dynamic-batch] [--fp16] [--int8 --calibration ... [--int8-activations symmetric]] [--int8-dynamic] [--prune R]`.</summary>
public static class OptimizeCommand
{
    /// <summary>Exit code when the result was written but failed verification (as compare's past-tolerance code).</summary>
    public const int VerificationFailed = 3;

    /// <summary>Creates the optimize command.</summary>
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "Model: a .onnx file or zoo:NAME[?options]" };
        var output = SharedOptions.Output();
        var inputSize = SharedOptions.InputSize();
        var dynamicBatch = new Option<bool>("--dynamic-batch") { Description = "Make a batch-1 export batchable (dynamic first axis, Reshape constants rewritten)" };
        var fp16 = new Option<bool>("--fp16") { Description = "Convert to float16; Softmax, LayerNormalization, reductions and Resize coordinates stay float32" };
        var keepIo = new Option<bool>("--keep-io-fp32") { Description = "With --fp16: keep float32 inputs and outputs (Casts inside the model)", DefaultValueFactory = _ => true };
        var fp16Cpu = new Option<bool>("--fp16-ort-cpu-kernels") { Description = "With --fp16: also keep in float32 every operator ONNX Runtime's CPU provider has no float16 kernel for (found by loading the model)" };
        var int8 = new Option<bool>("--int8") { Description = "Static int8 quantization (QDQ): per-channel int8 weights, per-tensor uint8 activations" };
        var int8Dynamic = new Option<bool>("--int8-dynamic") { Description = "Dynamic int8 quantization of MatMul/Gemm weights (transformers); no calibration" };
        var opset = new Option<long?>("--opset") { Description = $"Convert to this default-domain opset ({OpsetConversion.MinOpset}-{OpsetConversion.MaxOpset}) first, e.g. 17; --fp16/--int8 (13) and --int8-dynamic (11) convert an older model by themselves", HelpName = "N" };
        var shape = SharedOptions.Shape();
        var minCosine = new Option<double?>("--min-cosine") { Description = "Cosine similarity every output must reach against the original (default: 0.9999 exact rewrites, 0.999 fp16, 0.98 int8, 0.5 pruning); below it, or a dead output, fails verification (exit 3)", HelpName = "C" };
        var prune = new Option<double?>("--prune") { Description = "Structured L1 pruning: share of conv channels to remove (0-1), e.g. 0.25", HelpName = "RATIO" };
        var batchSizes = SharedOptions.BatchSizes([1, 8, 16]);
        var duration = SharedOptions.Duration(TimeSpan.FromSeconds(1));
        var noVerify = new Option<bool>("--no-verify") { Description = "Skip verification (output agreement and before/after bench)" };
        var command = new Command("optimize", "Transform a model (opset, input size, dynamic batch, fp16, int8, pruning; clean-up always), verify it against the original and bench both (on ONNX Runtime's CPU provider)")
        {
            model, output, inputSize, dynamicBatch, fp16, keepIo, fp16Cpu, int8, int8Dynamic, opset, prune, shape, minCosine, batchSizes, duration, noVerify,
        };
        var engine = EngineOptionGroup.AddTo(command);
        var reports = ReportOptions.AddTo(command);

        command.SetGuardedAction(parse =>
        {
            RefuseEngineOptionsOtherThanThreads(engine, parse);

            var targets = reports.Read(parse);
            var options = new OptimizeOptions
            {
                InputSize = parse.GetValue(inputSize)?.ToString(),
                DynamicBatch = parse.GetValue(dynamicBatch),
                Fp16 = parse.GetValue(fp16),
                KeepIoFp32 = parse.GetValue(keepIo),
                Fp16OrtCpuKernels = parse.GetValue(fp16Cpu),
                Int8 = parse.GetValue(int8),
                Calibration = parse.GetValue(engine.Calibration),
                CalibrationMethod = Int8Calibration.ParseMethod(parse.GetValue(engine.CalibrationMethod)!),
                Int8Symmetric = parse.GetResult(engine.Int8Activations) is { Implicit: false } ? Int8Calibration.ParseSymmetric(parse.GetValue(engine.Int8Activations)!) : null,
                Int8Dynamic = parse.GetValue(int8Dynamic),
                Opset = parse.GetValue(opset),
                Shapes = Benchmarking.ShapeBindings.Parse(parse.GetValue(shape) ?? []),
                MinCosine = parse.GetValue(minCosine),
                Prune = parse.GetValue(prune),
                Verify = !parse.GetValue(noVerify),
                Threads = parse.GetValue(engine.Threads),
                VerifyBatchSizes = parse.GetValue(batchSizes)!.Select(b => (long)b).ToArray(),
                BenchSeconds = parse.GetValue(duration).TotalSeconds,
            };
            options.CreateTransforms(); // check the combination before loading a large model
            var path = parse.GetValue(output)!;
            ReportFile.CheckWritable(path, "--output");
            var original = ModelSource.Load(parse.GetValue(model)!);
            var (result, report) = OptimizationPipeline.Run(original, options, line => Console.Error.WriteLine(line));
            result.Save(path);
            Print(targets.HumanConsole, report, path);
            targets.WriteJson(() => ReportJson.Serialize(report));
            targets.WriteCsv(() => OptimizeCsv.ToCsv(report, path));
            targets.SayWritten();
            if (report.Failure is { } failure)
            {
                CommonOptions.WriteError($"verification FAILED: {failure}; the model was written to {path} but does not match the original");
                return VerificationFailed;
            }

            return 0;
        });
        return command;
    }

    /// <summary>The verification runs on ONNX Runtime's CPU provider with its default session options, so of the engine group only --threads applies (and --calibration, --calibration-method, --int8-activations for --int8).</summary>
    private static void RefuseEngineOptionsOtherThanThreads(EngineOptionGroup engine, ParseResult parse)
    {
        var other = engine.Given(parse).FirstOrDefault(o => o != engine.Threads && o != engine.Calibration && o != engine.CalibrationMethod && o != engine.Int8Activations && !(o == engine.Engine && engine.EngineName(parse) == "ort"));
        if (other is not null)
        {
            throw new BatchwiseException(
                $"optimize verifies and benches on ONNX Runtime's CPU provider, so {other.Name} does not apply to it (of the engine options only --threads does)",
                "Drop it; to check the optimized model elsewhere run `batchwise compare ORIGINAL OUT.onnx --engines E` or `batchwise bench OUT.onnx --engine E`.");
        }
    }

    private static void Print(IAnsiConsole console, OptimizationReport report, string path)
    {
        var steps = new Table().Title($"optimize {Markup.Escape(report.Model)} -> {Markup.Escape(path)}").AddColumns("transform", "what changed", "seconds");
        foreach (var s in report.Steps)
        {
            steps.AddRow(s.Name, Markup.Escape(s.Summary), s.Seconds.ToString("F2", CultureInfo.InvariantCulture));
        }

        console.Write(steps);
        if (report.Before is { } b && report.After is { } a)
        {
            var at = report.InputsBefore == report.InputsAfter ? $"inputs {report.InputsBefore}" : $"before at {report.InputsBefore}, after at {report.InputsAfter}";
            var cost = new Table().Title(Markup.Escape($"cost at batch 1 ({at})")).AddColumns("", "before", "after", "change");
            cost.AddRow("parameters", $"{b.Parameters:N0}", $"{a.Parameters:N0}", Change(b.Parameters, a.Parameters));
            cost.AddRow("conv MACs", $"{b.ConvMacs:N0}", $"{a.ConvMacs:N0}", Change(b.ConvMacs, a.ConvMacs));
            cost.AddRow("all MACs (conv, gemm, matmul)", $"{b.TotalMacs:N0}", $"{a.TotalMacs:N0}", Change(b.TotalMacs, a.TotalMacs));
            cost.AddRow("file size (bytes)", $"{b.SizeBytes:N0}", $"{a.SizeBytes:N0}", Change(b.SizeBytes, a.SizeBytes));
            console.Write(cost);
        }

        if (report.AgreementError is not null)
        {
            console.MarkupLine($"[yellow]outputs not compared:[/] {Markup.Escape(report.AgreementError)}");
        }
        else if (report.Agreement.Count > 0)
        {
            var title = $"agreement with the original ({report.VerificationData}; every output needs cosine >= {report.MinCosine.ToString(CultureInfo.InvariantCulture)} and must not be dead)";
            var agreement = new Table().Title(Markup.Escape(title)).AddColumns("output", "max abs err", "mean abs err", "cosine", "top-1 agreement", "result");
            foreach (var x in report.Agreement)
            {
                agreement.AddRow(Markup.Escape(x.Output), x.MaxAbsError.ToString("G3", CultureInfo.InvariantCulture), x.MeanAbsError.ToString("G3", CultureInfo.InvariantCulture), x.Cosine.ToString("F6", CultureInfo.InvariantCulture), x.Top1Agreement is { } t ? t.ToString("P0", CultureInfo.InvariantCulture) : "-", x.Passed ? "pass" : Markup.Escape("FAIL: " + x.Problem));
            }

            console.Write(agreement);
        }

        if (report.SpeedAfter.Count > 0)
        {
            var speed = new Table().Title($"ONNX Runtime CPU ({Markup.Escape(report.Engine.Version)}, {Markup.Escape(report.Engine.Device)}, intra-op threads {Markup.Escape(report.Engine.Details.GetValueOrDefault("intra_op_threads", "0"))}), median latency, runs interleaved").AddColumns("batch", "before ms", "before samples/s", "after ms", "after samples/s", "speed-up");
            for (var i = 0; i < report.SpeedAfter.Count; i++)
            {
                var after = report.SpeedAfter[i];
                var before = i < report.SpeedBefore.Count ? report.SpeedBefore[i] : null;
                speed.AddRow(
                    after.BatchSize.ToString(CultureInfo.InvariantCulture),
                    Ms(before),
                    Rate(before),
                    Ms(after),
                    Rate(after),
                    before is { Error: null, MedianMs: > 0 } && after is { Error: null, MedianMs: > 0 } ? $"{before.MedianMs / after.MedianMs:F2}x" : "-");
            }

            console.Write(speed);
        }
    }

    private static string Ms(SpeedPoint? p) => p is null ? "-" : p.Error is not null ? Markup.Escape(p.Error.Length > 40 ? p.Error[..40] + "…" : p.Error) : p.MedianMs.ToString(p.MedianMs < 1 ? "F4" : "F2", CultureInfo.InvariantCulture);

    private static string Rate(SpeedPoint? p) => p is null || p.Error is not null ? "-" : p.Throughput.ToString("F1", CultureInfo.InvariantCulture);

    private static string Change(long before, long after) => before == 0 ? "-" : $"{(after - before) * 100.0 / before:+0.0;-0.0;0.0}%";
}
