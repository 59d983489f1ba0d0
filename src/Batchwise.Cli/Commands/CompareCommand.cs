using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Batchwise.Benchmarking;
using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Zoo;

namespace Batchwise.Cli.Commands;

/// <summary>`batchwise compare MODEL [MODEL2] --engines E1[,E2]`: the same seeded inputs through two engines or two model variants.</summary>
public static class CompareCommand
{
    /// <summary>Exit code when an output is past the tolerance.</summary>
    public const int PastTolerance = 3;

    /// <summary>The JSON layout for --json (snake_case, NaN/Infinity as strings).</summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Creates the compare command.</summary>
    public static Command Create()
    {
        var models = new Argument<string[]>("models")
        {
            Description = "One model (run through two engines) or two models (run through one engine, or the first on E1 and the second on E2): .onnx path or zoo:NAME",
            Arity = new ArgumentArity(1, 2),
        };
        var engines = new Option<string>("--engines", "-e") { Description = "Engine, or reference,candidate engines (e.g. ort,cuda); the first is the reference", DefaultValueFactory = _ => "ort" };
        var batchSize = new Option<int>("--batch-size", "-b") { Description = "Size of a dynamic first dimension", DefaultValueFactory = _ => 1 };
        var shapes = new Option<string[]>("--shape") { Description = "Size of another dynamic dimension: SYMBOL=SIZE (seq=128) or INPUT:DIMS with `batch` for the batch axis (input_ids:batch,128); repeatable" };
        var seed = new Option<int>("--seed") { Description = "Seed for the random inputs", DefaultValueFactory = _ => 0 };
        var input = new Option<string[]>("--input") { Description = "Real data for an input from a .npy file: NAME=FILE.npy (one sample, or [k, ...] samples repeated along the batch); repeatable" };
        var inputs = new Option<string?>("--inputs") { Description = "Folder of input data: NAME.npy or NAME.pb per input (input_N.* by position); inputs without a file get random data" };
        var rtol = new Option<double>("--rtol") { Description = "Relative tolerance: pass when |a-b| <= atol + rtol*|b| everywhere (b the reference)", DefaultValueFactory = _ => 1e-4 };
        var atol = new Option<double>("--atol") { Description = "Absolute tolerance", DefaultValueFactory = _ => 1e-5 };
        var json = new Option<string?>("--json") { Description = "Also write the result as JSON to this file" };
        var precision = new Option<Precision>("--precision") { Description = "Precision of the candidate engine (the reference runs fp32), e.g. fp16 on cuda", DefaultValueFactory = _ => Precision.Fp32 };
        var tf32 = new Option<bool>("--tf32") { Description = "Let the candidate engine use TF32 tensor cores for fp32 (GPU engines)" };
        var command = new Command("compare", "Run the same inputs through two engines or two model variants and compare every output (exit 3 when past tolerance)")
        {
            models, engines, batchSize, shapes, seed, input, inputs, rtol, atol, precision, tf32, json,
        };

        command.SetGuardedAction((parse, ct) =>
        {
            var modelSpecs = parse.GetValue(models) ?? [];
            var engineNames = ParseEngines(parse.GetValue(engines) ?? string.Empty);
            if (modelSpecs.Length == 1 && engineNames.Count == 1)
            {
                throw new BatchwiseException("Nothing to compare: one model on one engine", "Give two engines (--engines ort,cuda) or two models (compare a.onnx b.onnx).");
            }

            var tolerance = new Tolerance(parse.GetValue(rtol), parse.GetValue(atol)).Validated();
            var referenceEngine = EngineRegistry.Create(engineNames[0]);
            var candidateEngine = EngineRegistry.Create(engineNames[^1]);
            var referenceModel = ModelSource.Load(modelSpecs[0]);
            var candidateModel = modelSpecs.Length == 2 ? ModelSource.Load(modelSpecs[1]) : referenceModel;
            if (parse.GetResult(batchSize) is { Implicit: false })
            {
                ModelComparison.RequireBatch(referenceModel, parse.GetValue(batchSize));
                ModelComparison.RequireBatch(candidateModel, parse.GetValue(batchSize));
            }

            var referenceOptions = new EngineOptions();
            var candidateOptions = new EngineOptions { Precision = parse.GetValue(precision), AllowTf32 = parse.GetValue(tf32) };

            var bindings = ShapeBindings.Parse(parse.GetValue(shapes) ?? []);
            var data = new Dictionary<string, Tensor>(InputGenerator.ReadDataFiles(parse.GetValue(input) ?? []), StringComparer.Ordinal);
            var inputDir = parse.GetValue(inputs);
            if (inputDir is not null)
            {
                foreach (var (name, tensor) in InputFiles.Load(inputDir, referenceModel.Inputs))
                {
                    data.TryAdd(name, tensor);
                }
            }

            var generator = new InputGenerator(referenceModel, parse.GetValue(seed), data);
            var resolved = bindings.Resolve(referenceModel.Inputs, referenceModel.FindBatchAxis(), parse.GetValue(batchSize));
            var tensors = generator.Generate(resolved);
            var filled = generator.Describe();

            var reference = new ComparisonSide(referenceEngine, referenceModel, referenceOptions);
            var candidate = new ComparisonSide(candidateEngine, candidateModel, candidateOptions);
            var result = ModelComparison.Run(reference, candidate, tensors, tolerance, ct);

            Print(reference, candidate, result, tolerance, filled);
            var jsonPath = parse.GetValue(json);
            if (jsonPath is not null)
            {
                WriteJson(jsonPath, new
                {
                    Reference = new { Model = referenceModel.Path ?? modelSpecs[0], Engine = result.Reference },
                    Candidate = new { Model = candidateModel.Path ?? modelSpecs[^1], Engine = result.Candidate, Precision = candidateOptions.Precision, candidateOptions.AllowTf32 },
                    Seed = parse.GetValue(seed),
                    result.Inputs,
                    InputData = filled,
                    Tolerance = tolerance,
                    result.Outputs,
                    result.Notes,
                    result.Passed,
                    Date = DateTimeOffset.UtcNow,
                    Host = new { HostInfo.MachineName, HostInfo.CpuName, HostInfo.OperatingSystem, HostInfo.Runtime },
                });
            }

            return Task.FromResult(result.Passed ? 0 : PastTolerance);
        });
        return command;
    }

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

    /// <summary>Writes an object as indented snake_case JSON, or fails with a one-line error.</summary>
    internal static void WriteJson(string path, object value)
    {
        try
        {
            File.WriteAllText(path, JsonSerializer.Serialize(value, Json) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BatchwiseException($"Cannot write '{path}': {e.Message}", "Check the folder exists and is writable.", e);
        }
    }

    private static void Print(ComparisonSide reference, ComparisonSide candidate, ModelComparisonResult result, Tolerance tolerance, IReadOnlyDictionary<string, string> filled)
    {
        Console.WriteLine($"reference: {reference.Label} ({result.Reference.Version}, {result.Reference.Device})");
        Console.WriteLine($"candidate: {candidate.Label} ({result.Candidate.Version}, {result.Candidate.Device})");
        Console.WriteLine($"inputs:    {string.Join("; ", result.Inputs.Zip(reference.Model.Inputs, (text, spec) => $"{text}, {filled.GetValueOrDefault(spec.Name, "?")}"))}");
        var table = new PlainTable("output", "shape", "max abs", "max rel", "mean abs", "cosine", "top-1/5", "mismatches", "result");
        foreach (var o in result.Outputs)
        {
            table.AddRow(
                o.Name,
                o.Reference,
                Number(o.MaxAbsError),
                Number(o.MaxRelError),
                Number(o.MeanAbsError),
                o.Problem is null ? o.Cosine.ToString("F6", CultureInfo.InvariantCulture) : "-",
                o.TopK is null ? "-" : Percent(o.TopK.Top1) + (o.TopK.Top5 is double t5 ? "/" + Percent(t5) : string.Empty),
                o.Problem is null ? o.Mismatches.ToString(CultureInfo.InvariantCulture) : "-",
                o.Passed ? "pass" : "FAIL");
        }

        Console.Write(table.ToString());
        foreach (var note in result.Notes)
        {
            Console.WriteLine($"note: {note}");
        }

        var tol = $"rtol {Number(tolerance.Rtol)}, atol {Number(tolerance.Atol)}";
        if (result.Passed)
        {
            Console.WriteLine($"PASS: all {result.Outputs.Count} outputs within {tol}");
            return;
        }

        var failed = result.Outputs.Where(o => !o.Passed).ToList();
        Console.WriteLine($"FAIL: {failed.Count} of {result.Outputs.Count} outputs past {tol}");
        foreach (var o in failed)
        {
            var detail = o.Problem ?? $"worst at flat index {o.WorstIndex}: candidate {Number(o.WorstCandidate)}, reference {Number(o.WorstReference)}";
            Console.WriteLine($"  {o.Name}: {detail}");
        }
    }

    /// <summary>A short, culture-invariant rendering of an error or tolerance (0.0123, 1.2e-05).</summary>
    internal static string Number(double v) =>
        double.IsNaN(v) ? "NaN" : v == 0 ? "0" : Math.Abs(v) is >= 1e-3 and < 1e4 ? v.ToString("G4", CultureInfo.InvariantCulture) : v.ToString("0.##e+00", CultureInfo.InvariantCulture);

    private static string Percent(double share) => (share * 100).ToString("0.##", CultureInfo.InvariantCulture) + "%";
}
