using System.Diagnostics;
using Batchwise.Benchmarking;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>What `batchwise optimize` should do to a model.</summary>
public sealed record OptimizeOptions
{
    /// <summary>Static spatial size WxH for image inputs, or null.</summary>
    public string? InputSize { get; init; }

    /// <summary>Make a batch-1 export batchable.</summary>
    public bool DynamicBatch { get; init; }

    /// <summary>Convert to float16.</summary>
    public bool Fp16 { get; init; }

    /// <summary>With <see cref="Fp16"/>: keep float32 inputs and outputs.</summary>
    public bool KeepIoFp32 { get; init; } = true;

    /// <summary>With <see cref="Fp16"/>: keep in float32 what ONNX Runtime's CPU provider has no float16 kernel for.</summary>
    public bool Fp16OrtCpuKernels { get; init; }

    /// <summary>Static int8 QDQ quantization.</summary>
    public bool Int8 { get; init; }

    /// <summary>Calibration data for <see cref="Int8"/>: DIR or random:N.</summary>
    public string? Calibration { get; init; }

    /// <summary>How activation ranges are chosen.</summary>
    public CalibrationMethod CalibrationMethod { get; init; } = CalibrationMethod.MinMax;

    /// <summary>
    /// --int8-activations for <see cref="Int8"/>: true for symmetric (every activation's uint8 zero point 128, its scale
    /// the larger end of its range over 127, as TensorRT quantizes activations), false for asymmetric (the range's ends
    /// over 255 levels, the default); null when not given.
    /// </summary>
    public bool? Int8Symmetric { get; init; }

    /// <summary>Dynamic int8 quantization of MatMul/Gemm.</summary>
    public bool Int8Dynamic { get; init; }

    /// <summary>Default-domain opset to convert the model to first, or null (then only the opset a precision transform needs).</summary>
    public long? Opset { get; init; }

    /// <summary>Sizes of dynamic dimensions other than the batch (--shape): both models are verified, costed and benched at them.</summary>
    public ShapeBindings Shapes { get; init; } = ShapeBindings.None;

    /// <summary>The cosine similarity every output must reach against the original, or null for the levers' default (<see cref="EffectiveMinCosine"/>).</summary>
    public double? MinCosine { get; init; }

    /// <summary>
    /// The cosine threshold verification uses: --min-cosine, else the loosest default of the levers asked for: 0.9999 for
    /// exact rewrites (opset, input size, dynamic batch, clean-up), 0.999 for fp16, 0.98 for int8, 0.5 for pruning
    /// (pruned channels change the outputs until the model is fine-tuned, e.g. cosine 0.80-0.85 on the zoo classifiers at --prune 0.25; the check catches a collapsed or dead model, not accuracy loss).
    /// </summary>
    public double EffectiveMinCosine => MinCosine ?? (Prune is not null ? 0.5 : Int8 || Int8Dynamic ? 0.98 : Fp16 ? 0.999 : 0.9999);

    /// <summary>Share of conv channels to prune, or null.</summary>
    public double? Prune { get; init; }

    /// <summary>Run verification (agreement and before/after bench).</summary>
    public bool Verify { get; init; } = true;

    /// <summary>Batch sizes for the before/after bench.</summary>
    public IReadOnlyList<long> VerifyBatchSizes { get; init; } = [1, 8, 16];

    /// <summary>ONNX Runtime intra-op threads for the bench (0 = its default, one per core).</summary>
    public int Threads { get; init; }

    /// <summary>Measurement time per bench point, seconds.</summary>
    public double BenchSeconds { get; init; } = 1.0;

    /// <summary>
    /// Checks the combination and builds the transforms in the order they run: opset conversion, clean-up, input size,
    /// dynamic batch, pruning, precision. Given the model's opset, a conversion is added where a precision transform needs
    /// a newer opset than the model's (and --opset does not ask for one).
    /// </summary>
    public IReadOnlyList<IModelTransform> CreateTransforms(long? modelOpset = null)
    {
        if (Fp16 && (Int8 || Int8Dynamic))
        {
            throw new BatchwiseException("--fp16 and --int8/--int8-dynamic together are not supported yet", "Choose one precision: --fp16, --int8 or --int8-dynamic.");
        }

        if (Int8 && Int8Dynamic)
        {
            throw new BatchwiseException("--int8 and --int8-dynamic are alternatives", "Use --int8 (static, calibrated; convolutional models) or --int8-dynamic (MatMul-heavy models).");
        }

        if (Int8Symmetric is not null && !Int8)
        {
            throw new BatchwiseException("--int8-activations applies to --int8 (static quantization) only", "Add --int8, or drop --int8-activations.");
        }

        if (Int8 && Calibration is null)
        {
            throw new BatchwiseException("--int8 needs calibration data", "Add --calibration DIR (a folder of .npy samples) or --calibration random:32.");
        }

        if (!Int8 && Calibration is not null && Calibration.StartsWith("random:", StringComparison.OrdinalIgnoreCase))
        {
            throw new BatchwiseException("--calibration random:N is only used with --int8 (verification already runs on seeded random inputs)", "Add --int8, or pass --calibration DIR to verify on real samples.");
        }

        if (MinCosine is { } c && !(c is >= -1 and <= 1))
        {
            throw new BatchwiseException($"--min-cosine must be between -1 and 1, got {c.ToString(System.Globalization.CultureInfo.InvariantCulture)}", "Write e.g. --min-cosine 0.99.");
        }

        if (Threads < 0)
        {
            throw new BatchwiseException($"--threads must be 0 (ONNX Runtime's default) or more, got {Threads}", "Write e.g. --threads 1.");
        }

        if (VerifyBatchSizes.Count == 0 || VerifyBatchSizes.Any(b => b < 1))
        {
            throw new BatchwiseException($"--batch-sizes must be positive integers, got {string.Join(",", VerifyBatchSizes)}", "Write e.g. --batch-sizes 1,8,16.");
        }

        var (needed, neededBy) = Fp16 ? (13L, "--fp16") : Int8 ? (13L, "--int8") : Int8Dynamic ? (11L, "--int8-dynamic") : (0L, null);
        if (Opset is { } asked && asked < needed)
        {
            throw new BatchwiseException($"--opset {asked} is older than {neededBy} needs (opset {needed})", $"Drop --opset (the model is converted to {needed} automatically) or write --opset {needed} or newer.");
        }

        var transforms = new List<IModelTransform>();
        if (Opset is { } target)
        {
            transforms.Add(new OpsetConversion(target));
        }
        else if (modelOpset is { } current && current < needed)
        {
            transforms.Add(new OpsetConversion(needed, $"{neededBy} needs opset {needed}"));
        }

        transforms.AddRange([new ConstantFolding(), new BatchNormFolding(), new DeadNodeRemoval()]);
        if (InputSize is not null)
        {
            transforms.Add(StaticInputSize.Parse(InputSize));
        }

        if (DynamicBatch)
        {
            transforms.Add(new DynamicBatch());
        }

        if (Prune is { } ratio)
        {
            transforms.Add(new ChannelPruning(ratio));
        }

        if (Int8)
        {
            transforms.Add(new Int8Quantization(CalibrationData.Parse(Calibration!), CalibrationMethod) { SymmetricActivations = Int8Symmetric == true });
        }

        if (Int8Dynamic)
        {
            transforms.Add(new Int8DynamicQuantization());
        }

        if (Fp16)
        {
            transforms.Add(new Fp16Conversion { KeepIoFp32 = KeepIoFp32, MatchOrtCpuKernels = Fp16OrtCpuKernels });
        }

        return transforms;
    }
}

/// <summary>One transform as it ran.</summary>
/// <param name="Name">Transform name.</param>
/// <param name="Summary">What it changed.</param>
/// <param name="Seconds">How long it took.</param>
public sealed record TransformStep(string Name, string Summary, double Seconds);

/// <summary>Everything `batchwise optimize` did and measured.</summary>
/// <param name="Model">The input model.</param>
/// <param name="Steps">Transforms in order.</param>
/// <param name="InputsBefore">The original's input shapes at batch 1 as costed, compared and benched.</param>
/// <param name="InputsAfter">The result's input shapes at batch 1 (the same unless --input-size changed a fixed size).</param>
/// <param name="Before">Cost of the original.</param>
/// <param name="After">Cost of the result.</param>
/// <param name="VerificationData">What the agreement check ran on.</param>
/// <param name="MinCosine">The cosine similarity every output must reach.</param>
/// <param name="Agreement">Output agreement, original vs result.</param>
/// <param name="AgreementError">Why outputs could not be compared, when they could not.</param>
/// <param name="Passed">True when every output passed (false when one failed or the outputs could not be compared).</param>
/// <param name="SpeedBefore">Original's speed per batch size.</param>
/// <param name="SpeedAfter">Result's speed per batch size.</param>
/// <param name="Engine">What ran the verification.</param>
/// <param name="Date">When.</param>
public sealed record OptimizationReport(
    string Model,
    IReadOnlyList<TransformStep> Steps,
    string InputsBefore,
    string InputsAfter,
    CostSummary? Before,
    CostSummary? After,
    string VerificationData,
    double MinCosine,
    IReadOnlyList<OutputAgreement> Agreement,
    string? AgreementError,
    bool Passed,
    IReadOnlyList<SpeedPoint> SpeedBefore,
    IReadOnlyList<SpeedPoint> SpeedAfter,
    EngineDescription Engine,
    DateTimeOffset Date)
{
    /// <summary>The JSON schema's name (docs/optimize.md, docs/report-schemas.md).</summary>
    [System.Text.Json.Serialization.JsonPropertyOrder(-2)]
    public string Schema { get; init; } = "batchwise.optimize";

    /// <summary>The JSON schema's version; bumped on any incompatible change.</summary>
    [System.Text.Json.Serialization.JsonPropertyOrder(-1)]
    public int SchemaVersion { get; init; } = 1;

    /// <summary>False when verification was skipped (--no-verify): the result is neither passed nor failed.</summary>
    public bool Verified { get; init; } = true;

    /// <summary>One line: why verification failed, or null when it passed or was skipped.</summary>
    public string? Failure => Passed || !Verified ? null
        : AgreementError is not null ? $"outputs not compared: {AgreementError}"
        : string.Join("; ", Agreement.Where(a => !a.Passed).Select(a => $"'{a.Output}': {a.Problem}"));
}

/// <summary>Runs the transforms on a copy of the model, proves ONNX Runtime loads the result, and verifies it against the original.</summary>
public static class OptimizationPipeline
{
    /// <summary>Why ONNX Runtime cannot load or run <paramref name="model"/>, or null when it can.</summary>
    private static BatchwiseException? OriginalFailure(OnnxModel model)
    {
        try
        {
            using var session = new OrtEngine().Load(model, new EngineOptions());
            session.Run(SeededInputs.Create(model, 1));
            return null;
        }
        catch (BatchwiseException e)
        {
            return e;
        }
    }

    /// <summary>Transforms <paramref name="original"/> (left unchanged) and returns the result and the report.</summary>
    public static (OnnxModel Result, OptimizationReport Report) Run(OnnxModel original, OptimizeOptions options, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(options);
        var transforms = options.CreateTransforms(original.Opset);

        // Every dynamic dimension gets its size now, before any transform runs (the error names all of them at once).
        var inputs = VerificationInputs.Create(original, options);
        var result = OnnxModel.FromProto(original.Proto.Clone(), original.Name);
        var steps = new List<TransformStep>();
        foreach (var t in transforms)
        {
            progress?.Invoke($"{t.Name}...");
            var start = Stopwatch.GetTimestamp();
            var summary = t.Apply(result);
            steps.Add(new TransformStep(t.Name, summary, Stopwatch.GetElapsedTime(start).TotalSeconds));
        }

        // Every result must load in ONNX Runtime; a transform that produced an invalid graph fails here, not in the user's server.
        try
        {
            using var session = new OrtEngine().Load(result, new EngineOptions());
            session.Run(inputs.Seeded(result, 1));
        }
        catch (BatchwiseException e)
        {
            // When the input itself does not run, the transforms are not to blame: say why ONNX Runtime refuses the input.
            if (OriginalFailure(original) is { } input)
            {
                var at = OrtFailure.NodeIn(OrtFailure.AllMessages(input));
                throw new BatchwiseException($"ONNX Runtime cannot run the input model '{original.Name}'{(at is null ? string.Empty : $" at {at}")}: {OrtFailure.Detail(input)}", "optimize needs a model that ONNX Runtime runs; re-export it (an opset and IR version ONNX Runtime supports) and check it with `batchwise bench MODEL`.", input);
            }

            var node = OrtFailure.NodeIn(OrtFailure.AllMessages(e));
            throw new BatchwiseException($"The optimized model does not run in ONNX Runtime{(node is null ? string.Empty : $" at {node}")}: {OrtFailure.Detail(e)}", "The input runs, so a transform broke it: this is a Batchwise bug; run without the last option and report it with --verbose output.", e);
        }

        var engine = new OrtEngine().Describe(new EngineOptions { IntraOpThreads = options.Threads });
        var minCosine = options.EffectiveMinCosine;
        var (inputsBefore, inputsAfter) = (inputs.Describe(original), inputs.Describe(result));
        if (!options.Verify)
        {
            return (result, new OptimizationReport(original.Name, steps, inputsBefore, inputsAfter, null, null, "none", minCosine, [], "verification skipped (--no-verify)", false, [], [], engine, DateTimeOffset.UtcNow) { Verified = false });
        }

        progress?.Invoke($"verifying outputs on {inputs.Description}...");
        IReadOnlyList<OutputAgreement> agreement = [];
        string? agreementError = null;
        var comparable = inputsBefore == inputsAfter;
        try
        {
            agreement = Verification.Compare(original, result, inputs.AgreementBatches(original), minCosine);
        }
        catch (BatchwiseException) when (!comparable)
        {
            agreementError = $"the original takes {inputsBefore}, the result {inputsAfter}; outputs are compared only where both accept the same input";
        }
        catch (BatchwiseException e)
        {
            agreementError = e.Message;
        }

        // Both sides costed at the shapes they are benched at; a fixed-size original keeps its own size and the report shows both.
        var before = CostSummary.Of(original, inputs.ShapesFor(original, 1));
        var after = CostSummary.Of(result, inputs.ShapesFor(result, 1));

        progress?.Invoke("benchmarking the original and the result (interleaved runs)...");
        IReadOnlyList<SpeedPoint> speedBefore, speedAfter;
        try
        {
            (speedBefore, speedAfter) = Verification.BenchInterleaved(original, result, options.VerifyBatchSizes, options.BenchSeconds, new EngineOptions { IntraOpThreads = options.Threads }, inputs);
        }
        catch (BatchwiseException)
        {
            // One of the two cannot run at some batch size the other can: bench them one after the other.
            speedBefore = SafeBench(original, options, inputs);
            speedAfter = SafeBench(result, options, inputs);
        }

        // Outputs that cannot be compared because --input-size changed a fixed size are not a failure: the report says why.
        var passed = agreement.All(a => a.Passed) && (agreementError is null || !comparable) && (agreement.Count > 0 || agreementError is not null);
        return (result, new OptimizationReport(original.Name, steps, inputsBefore, inputsAfter, before, after, inputs.Description, minCosine, agreement, agreementError, passed, speedBefore, speedAfter, engine, DateTimeOffset.UtcNow));
    }

    private static IReadOnlyList<SpeedPoint> SafeBench(OnnxModel model, OptimizeOptions options, VerificationInputs inputs)
    {
        try
        {
            return Verification.Bench(model, options.VerifyBatchSizes, options.BenchSeconds, new EngineOptions { IntraOpThreads = options.Threads }, inputs);
        }
        catch (BatchwiseException e)
        {
            return options.VerifyBatchSizes.Select(b => new SpeedPoint(b, 0, 0, 0, e.Message)).ToList();
        }
    }
}
