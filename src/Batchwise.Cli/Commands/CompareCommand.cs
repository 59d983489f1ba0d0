using System.CommandLine;
using System.Globalization;
using Batchwise.Analysis;
using Batchwise.Benchmarking;
using Batchwise.Cli.Options;
using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Reports;
using Batchwise.Zoo;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise compare MODEL [MODEL2] --engines E1[,E2]`: the same seeded inputs through two engines or two model variants.</summary>
public static class CompareCommand
{
    /// <summary>Exit code when an output is past the tolerance.</summary>
    public const int PastTolerance = 3;

    /// <summary>Creates the compare command.</summary>
    public static Command Create()
    {
        var models = new Argument<string[]>("models")
        {
            Description = "One model (run through two engines) or two models (run through one engine, or the first on E1 and the second on E2): .onnx path or zoo:NAME",
            Arity = new ArgumentArity(1, 2),
        };
        var engines = new Option<string>("--engines", "-e") { Description = "Engine, or reference,candidate engines (e.g. ort,cuda); the first is the reference", HelpName = "E1[,E2]", DefaultValueFactory = _ => "ort" };
        var batchSize = SharedOptions.BatchSize();
        var shapes = SharedOptions.Shape();
        var seed = SharedOptions.Seed();
        var input = SharedOptions.Input();
        var inputs = new Option<string?>("--inputs") { Description = "Folder of input data: NAME.npy or NAME.pb per input (input_N.* by position); inputs without a file get random data", HelpName = "DIR" };
        var rtol = SharedOptions.Rtol(1e-4);
        var atol = SharedOptions.Atol(1e-5);
        var command = new Command("compare", "Run the same inputs through two engines or two model variants and compare every output (exit 3 when past tolerance); --precision, --tf32 and --tactics apply to the candidate, the other engine options to both")
        {
            models, engines, batchSize, shapes, seed, input, inputs, rtol, atol,
        };
        var engine = EngineOptionGroup.AddTo(command, withEngine: false);
        var reports = ReportOptions.AddTo(command);

        command.SetGuardedAction((parse, ct) =>
        {
            var targets = reports.Read(parse);
            var modelSpecs = parse.GetValue(models) ?? [];
            var engineNames = ParseEngines(parse.GetValue(engines) ?? string.Empty);
            var tolerance = new Tolerance(parse.GetValue(rtol), parse.GetValue(atol)).Validated();
            var candidateOptions = engine.Read(parse, engineNames, engineNames[^1]);
            var referenceOptions = candidateOptions with { Precision = Precision.Fp32, AllowTf32 = false, Tactics = TacticSelection.EngineDefault };

            // One model on one engine compares only where the candidate's precision differs (ort fp32 against ort int8).
            if (modelSpecs.Length == 1 && engineNames.Count == 1 && candidateOptions.Precision == Precision.Fp32 && !candidateOptions.AllowTf32)
            {
                throw new BatchwiseException("Nothing to compare: one model on one engine at one precision", "Give two engines (--engines ort,cuda), two models (compare a.onnx b.onnx), or a candidate precision (--engines ort --precision int8).");
            }
            var referenceModel = ModelSource.Load(modelSpecs[0]);
            var candidateModel = modelSpecs.Length == 2 ? ModelSource.Load(modelSpecs[1]) : referenceModel;

            // ort runs a model already quantized with its int8 kernels at fp32 as at int8: the same run twice.
            if (modelSpecs.Length == 1 && engineNames.Count == 1 && engineNames[0] == "ort" && candidateOptions.Precision == Precision.Int8 && QuantizedGraph.IsQuantized(referenceModel))
            {
                throw new BatchwiseException($"Nothing to compare: '{referenceModel.Name}' is already quantized, so ort runs it the same at fp32 and at int8", "Compare it with its float original (compare FLOAT.onnx QDQ.onnx --engines ort), or on two engines (--engines ort,cuda --precision int8).");
            }
            if (parse.GetResult(batchSize) is { Implicit: false })
            {
                ModelComparison.RequireBatch(referenceModel, parse.GetValue(batchSize));
                ModelComparison.RequireBatch(candidateModel, parse.GetValue(batchSize));
            }

            var reference = new ComparisonSide(EngineRegistry.Create(engineNames[0]), referenceModel, Transforms.CalibratedInt8.OptionsFor(referenceOptions, referenceModel));
            var candidate = new ComparisonSide(EngineRegistry.Create(engineNames[^1]), candidateModel, Transforms.CalibratedInt8.OptionsFor(candidateOptions, candidateModel));

            var data = new Dictionary<string, Tensor>(InputGenerator.ReadDataFiles(parse.GetValue(input) ?? []), StringComparer.Ordinal);
            if (parse.GetValue(inputs) is { } inputDir)
            {
                foreach (var (name, tensor) in InputFiles.Load(inputDir, referenceModel.Inputs))
                {
                    data.TryAdd(name, tensor);
                }
            }

            var generator = new InputGenerator(referenceModel, parse.GetValue(seed), data);
            var tensors = generator.Generate(ShapeBindings.Parse(parse.GetValue(shapes) ?? []).Resolve(referenceModel.Inputs, referenceModel.FindBatchAxis(), parse.GetValue(batchSize)));
            var filled = generator.Describe();
            var int8 = JudgedAsInt8(candidateOptions.Precision, QuantizedGraph.IsQuantized(candidateModel), QuantizedGraph.IsQuantized(referenceModel), engineNames[0] == engineNames[^1]);
            var explicitTolerance = parse.GetResult(rtol) is { Implicit: false } || parse.GetResult(atol) is { Implicit: false };
            var agreement = int8 && !explicitTolerance ? Agreement.Int8 : null;
            var result = ModelComparison.Run(reference, candidate, tensors, tolerance, ct, agreement);

            var document = new CompareDocument(
                new CompareSideRecord(referenceModel.Path ?? modelSpecs[0], result.Reference, referenceOptions.Precision, referenceOptions.AllowTf32),
                new CompareSideRecord(candidateModel.Path ?? modelSpecs[^1], result.Candidate, candidateOptions.Precision, candidateOptions.AllowTf32),
                parse.GetValue(seed), result.Inputs, filled, tolerance, result.Outputs, result.Notes, result.Passed, DateTimeOffset.UtcNow, HostRecord.Current());
            Print(targets.Human, reference, candidate, result, tolerance, filled, agreement);
            targets.WriteJson(() => ReportJson.Serialize(document));
            targets.WriteCsv(document.ToCsv);
            targets.SayWritten();
            return Task.FromResult(result.Passed ? 0 : PastTolerance);
        });
        return command;
    }

    /// <summary>
    /// Whether the candidate is judged by the int8 bar (cosine and top-1 agreement) rather than a tolerance: an int8
    /// candidate (--precision int8), or a quantized model against a float one, rounds every value to one of 256 levels;
    /// so does a quantized model on another engine than the reference's (ONNX Runtime's QLinearConv and the cuda
    /// engine's int8 graph requantize alike but round differently, one step here and there, through every layer).
    /// </summary>
    internal static bool JudgedAsInt8(Precision candidatePrecision, bool candidateQuantized, bool referenceQuantized, bool sameEngine) =>
        candidatePrecision == Precision.Int8 || (candidateQuantized && (!referenceQuantized || !sameEngine));

    /// <summary>", precision P" where the engine's description names a precision (cuda always; ort for int8).</summary>
    private static string PrecisionOf(EngineDescription engine) => engine.Details.TryGetValue("precision", out var p) ? $", precision {p}" : string.Empty;

    /// <summary>Parses --engines: one or two registered engine names.</summary>
    internal static IReadOnlyList<string> ParseEngines(string text)
    {
        var names = text.Split(',', StringSplitOptions.TrimEntries);
        if (names.Length is < 1 or > 2 || names.Any(string.IsNullOrEmpty))
        {
            throw new BatchwiseException($"--engines '{text}' is not one engine or two separated by a comma", $"Write e.g. --engines ort,cuda (engines: {string.Join(", ", EngineRegistry.Names)}).");
        }

        return names;
    }

    private static void Print(TextWriter output, ComparisonSide reference, ComparisonSide candidate, ModelComparisonResult result, Tolerance tolerance, IReadOnlyDictionary<string, string> filled, Agreement? agreement)
    {
        output.WriteLine($"reference: {reference.Label} ({result.Reference.Version}, {result.Reference.Device}{PrecisionOf(result.Reference)})");
        output.WriteLine($"candidate: {candidate.Label} ({result.Candidate.Version}, {result.Candidate.Device}{PrecisionOf(result.Candidate)})");
        output.WriteLine($"inputs:    {string.Join("; ", result.Inputs.Zip(reference.Model.Inputs, (text, spec) => $"{text}, {filled.GetValueOrDefault(spec.Name, "?")}"))}");
        var table = new PlainTable("output", "shape", "max abs", "max rel", "mean abs", "cosine", "top-1/5", "mismatches", "result");
        foreach (var o in result.Outputs)
        {
            table.AddRow(
                o.Name,
                o.Reference,
                Number(o.MaxAbsError),
                Number(o.MaxRelError),
                Number(o.MeanAbsError),
                o.Elements > 0 ? o.Cosine.ToString("F6", CultureInfo.InvariantCulture) : "-",
                o.TopK is null ? "-" : Percent(o.TopK.Top1) + (o.TopK.Top5 is double t5 ? "/" + Percent(t5) : string.Empty),
                o.Elements > 0 ? o.Mismatches.ToString(CultureInfo.InvariantCulture) : "-",
                o.Passed ? "pass" : "FAIL");
        }

        output.Write(table.ToString());
        foreach (var note in result.Notes)
        {
            output.WriteLine($"note: {note}");
        }

        var tol = agreement is not null ? "the int8 bar (" + agreement.Describe() + ")" : $"rtol {Number(tolerance.Rtol)}, atol {Number(tolerance.Atol)}";
        if (result.Passed)
        {
            output.WriteLine($"PASS: all {result.Outputs.Count} outputs within {tol}");
            return;
        }

        var failed = result.Outputs.Where(o => !o.Passed).ToList();
        output.WriteLine($"FAIL: {failed.Count} of {result.Outputs.Count} outputs past {tol}");
        foreach (var o in failed)
        {
            var detail = o.Problem ?? $"worst at flat index {o.WorstIndex}: candidate {Number(o.WorstCandidate)}, reference {Number(o.WorstReference)}";
            output.WriteLine($"  {o.Name}: {detail}");
        }
    }

    /// <summary>A short, culture-invariant rendering of an error or tolerance (0.0123, 1.2e-05).</summary>
    internal static string Number(double v) =>
        double.IsNaN(v) ? "NaN" : v == 0 ? "0" : Math.Abs(v) is >= 1e-3 and < 1e4 ? v.ToString("G4", CultureInfo.InvariantCulture) : v.ToString("0.##e+00", CultureInfo.InvariantCulture);

    private static string Percent(double share) => (share * 100).ToString("0.##", CultureInfo.InvariantCulture) + "%";
}
