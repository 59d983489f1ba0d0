using System.Globalization;
using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Onnx;
using OnnxProto = Onnx;

namespace Batchwise.Conformance;

/// <summary>What happened to one node test case.</summary>
public enum CaseStatus
{
    /// <summary>Every output of every data set within tolerance.</summary>
    Passed,

    /// <summary>Ran, and an output was wrong (or the run threw).</summary>
    Failed,

    /// <summary>The engine refused the model at load (an operator or attribute it does not implement): not a failure.</summary>
    Unsupported,

    /// <summary>Not run: Batchwise cannot read the model or its data (IR/opset out of range, sequence or string tensors).</summary>
    Skipped,
}

/// <summary>The outcome of one node test case.</summary>
/// <param name="Name">Case name (folder), e.g. test_relu.</param>
/// <param name="Ops">Operator types in its model.</param>
/// <param name="Status">Passed, failed, unsupported or skipped.</param>
/// <param name="Reason">Why it failed, was unsupported or skipped; null when passed.</param>
/// <param name="MaxAbsError">Largest |actual − expected| over its outputs (NaN when nothing was compared).</param>
/// <param name="Seconds">Wall time for load and runs.</param>
public sealed record CaseResult(string Name, IReadOnlyList<string> Ops, CaseStatus Status, string? Reason, double MaxAbsError, double Seconds);

/// <summary>Counts for one operator: every case whose model contains it.</summary>
/// <param name="Op">Operator type.</param>
/// <param name="Ran">Cases executed (passed + failed).</param>
/// <param name="Passed">Cases passed.</param>
/// <param name="Failed">Cases failed.</param>
/// <param name="Unsupported">Cases the engine refused at load.</param>
/// <param name="Skipped">Cases not run.</param>
public sealed record OperatorSummary(string Op, int Ran, int Passed, int Failed, int Unsupported, int Skipped);

/// <summary>A conformance run: every case's result and the per-operator summary.</summary>
/// <param name="Engine">What ran.</param>
/// <param name="Directory">Where the cases came from.</param>
/// <param name="Tolerance">Default rtol/atol.</param>
/// <param name="Cases">Each case's result, in name order.</param>
public sealed record ConformanceReport(EngineDescription Engine, string Directory, Tolerance Tolerance, IReadOnlyList<CaseResult> Cases)
{
    /// <summary>Per operator (a case with several operators counts under each), in name order.</summary>
    public IReadOnlyList<OperatorSummary> Operators =>
        Cases.SelectMany(c => c.Ops.Select(op => (op, c)))
            .GroupBy(x => x.op, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => Summarize(g.Key, g.Select(x => x.c).ToList()))
            .ToList();

    /// <summary>All cases together (each counted once).</summary>
    public OperatorSummary Total => Summarize("total", Cases);

    private static OperatorSummary Summarize(string op, IReadOnlyList<CaseResult> cases)
    {
        var passed = cases.Count(c => c.Status == CaseStatus.Passed);
        var failed = cases.Count(c => c.Status == CaseStatus.Failed);
        return new OperatorSummary(op, passed + failed, passed, failed, cases.Count(c => c.Status == CaseStatus.Unsupported), cases.Count(c => c.Status == CaseStatus.Skipped));
    }
}

/// <summary>Runs ONNX backend node test cases through any engine and checks the outputs against the expected ones.</summary>
public sealed class ConformanceRunner
{
    // Cases whose reference outputs need a looser bound than ONNX's defaults: the FFT cases sum hundreds of terms
    // of magnitude ~50 in float32, so their rounding error is ~1e-4 absolute (ONNX Runtime's own backend test series
    // loosens them the same way).
    private static readonly Dictionary<string, Tolerance> Overrides = new(StringComparer.Ordinal)
    {
        ["test_dft"] = new(1e-3, 1e-3),
        ["test_dft_axis"] = new(1e-3, 1e-3),
        ["test_dft_inverse"] = new(1e-3, 1e-3),
        ["test_stft"] = new(1e-3, 1e-3),
        ["test_stft_with_window"] = new(1e-3, 1e-3),
    };

    // Operators whose outputs are random draws: an engine cannot reproduce the expected values.
    private static readonly HashSet<string> RandomOps = new(StringComparer.Ordinal) { "Bernoulli", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial" };

    private readonly IEngine _engine;
    private readonly EngineOptions _options;
    private readonly Tolerance _tolerance;

    /// <summary>Creates a runner for one engine.</summary>
    public ConformanceRunner(IEngine engine, EngineOptions options, Tolerance tolerance)
    {
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _tolerance = tolerance ?? throw new ArgumentNullException(nameof(tolerance));
    }

    /// <summary>Runs every case; <paramref name="progress"/> hears each result as it comes.</summary>
    public ConformanceReport Run(string directory, IReadOnlyList<NodeTestCase> cases, Action<CaseResult>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cases);

        // Describe first: an engine that cannot start here (no GPU, a missing library) says so once, up front,
        // rather than as one "unsupported" per case.
        var description = _engine.Describe(_options);
        var results = new List<CaseResult>(cases.Count);
        foreach (var testCase in cases)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var result = RunCase(testCase, cancellationToken);
            results.Add(result);
            progress?.Invoke(result);
        }

        return new ConformanceReport(description, directory, _tolerance, results);
    }

    /// <summary>Runs one case.</summary>
    public CaseResult RunCase(NodeTestCase testCase, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(testCase);
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        CaseResult Result(CaseStatus status, string? reason, double maxAbs = double.NaN) =>
            new(testCase.Name, testCase.Ops, status, reason, maxAbs, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);

        OnnxModel model;
        try
        {
            model = OnnxModel.Load(testCase.ModelPath);
        }
        catch (BatchwiseException e)
        {
            return Result(CaseStatus.Skipped, e.Message.Replace($"'{testCase.ModelPath}'", "model", StringComparison.Ordinal));
        }

        var random = testCase.Ops.FirstOrDefault(RandomOps.Contains)
            ?? (model.Graph.Node.Any(n => n.OpType == "Dropout" && n.Input.Count == 3 && !string.IsNullOrEmpty(n.Input[2])) ? "Dropout with training_mode" : null);
        if (random is not null)
        {
            return Result(CaseStatus.Skipped, $"its output is random ({random}); the expected values cannot be reproduced");
        }

        var graphValues = model.Graph.Input.Concat(model.Graph.Output);
        var nonTensor = graphValues.FirstOrDefault(v => v.Type?.TensorType is null);
        if (nonTensor is not null)
        {
            var kind = nonTensor.Type?.ValueCase switch
            {
                OnnxProto.TypeProto.ValueOneofCase.SequenceType => "sequence",
                OnnxProto.TypeProto.ValueOneofCase.OptionalType => "optional",
                OnnxProto.TypeProto.ValueOneofCase.MapType => "map",
                OnnxProto.TypeProto.ValueOneofCase.SparseTensorType => "sparse tensor",
                _ => "untyped",
            };
            return Result(CaseStatus.Skipped, $"'{nonTensor.Name}' is {(kind is "optional" or "untyped" ? "an" : "a")} {kind} value, not a tensor");
        }

        var badType = model.Inputs.Concat(model.Outputs).FirstOrDefault(s => !IsNumeric(s.ElementType));
        if (badType is not null)
        {
            return Result(CaseStatus.Skipped, $"'{badType.Name}' is a {TensorProtos.DataTypeName((int)badType.ElementType)} tensor; Batchwise handles numeric and bool tensors");
        }

        if (testCase.DataSets.Count == 0)
        {
            return Result(CaseStatus.Skipped, "no test_data_set_* folder");
        }

        IEngineSession session;
        try
        {
            session = _engine.Load(model, _options);
        }
        catch (BatchwiseException e)
        {
            return Result(CaseStatus.Unsupported, e.Message);
        }
        catch (Exception e)
        {
            // Anything but a clear refusal is the engine's bug, so it counts against it.
            return Result(CaseStatus.Failed, $"load failed: {e.GetType().Name}: {e.Message}");
        }

        var tolerance = Overrides.GetValueOrDefault(testCase.Name, _tolerance);
        var maxAbs = 0.0;
        using (session)
        {
            foreach (var dataSet in testCase.DataSets)
            {
                List<Tensor> inputs, expected;
                try
                {
                    inputs = ReadTensors(dataSet, "input", model.Inputs);
                    expected = ReadTensors(dataSet, "output", model.Outputs);
                }
                catch (BatchwiseException e)
                {
                    return Result(CaseStatus.Skipped, $"{Path.GetFileName(dataSet)}: {e.Message}");
                }

                var contradiction = Contradiction(model.Inputs, inputs);
                if (contradiction is not null)
                {
                    return Result(CaseStatus.Skipped, $"{Path.GetFileName(dataSet)}: the test data contradicts the model: {contradiction}");
                }

                IReadOnlyList<Tensor> actual;
                try
                {
                    actual = session.Run(inputs, cancellationToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    return Result(CaseStatus.Failed, $"{Path.GetFileName(dataSet)}: run failed: {(e is BatchwiseException b ? b.Message : e.GetType().Name + ": " + e.Message)}");
                }

                if (actual.Count != expected.Count)
                {
                    return Result(CaseStatus.Failed, $"{Path.GetFileName(dataSet)}: {actual.Count} outputs, expected {expected.Count}");
                }

                for (var i = 0; i < expected.Count; i++)
                {
                    var c = TensorComparison.Compare(model.Outputs[i].Name, actual[i], expected[i], tolerance, requireSameElementType: true);
                    if (double.IsFinite(c.MaxAbsError) || double.IsPositiveInfinity(c.MaxAbsError))
                    {
                        maxAbs = Math.Max(maxAbs, c.MaxAbsError);
                    }

                    if (!c.Passed)
                    {
                        var why = c.Problem ?? $"{c.Mismatches} of {c.Elements} elements past rtol {tolerance.Rtol.ToString("G3", CultureInfo.InvariantCulture).ToLowerInvariant()}, atol {tolerance.Atol.ToString("G3", CultureInfo.InvariantCulture).ToLowerInvariant()}; max abs error {c.MaxAbsError:G4} at {c.WorstIndex} (got {c.WorstCandidate:G6}, expected {c.WorstReference:G6})";
                        return Result(CaseStatus.Failed, $"{Path.GetFileName(dataSet)}: output '{c.Name}': {why}", maxAbs);
                    }
                }
            }
        }

        return Result(CaseStatus.Passed, null, maxAbs);
    }

    /// <summary>Where an input's data disagrees with the model's declared type or fixed dimensions (a broken test case, not an engine failure).</summary>
    private static string? Contradiction(IReadOnlyList<TensorSpec> specs, IReadOnlyList<Tensor> inputs)
    {
        for (var i = 0; i < specs.Count; i++)
        {
            var (spec, tensor) = (specs[i], inputs[i]);
            if (spec.ElementType != tensor.ElementType)
            {
                return $"input '{spec.Name}' holds {tensor.ElementType.ShortName()}, the model declares {spec.ElementType.ShortName()}";
            }

            var declared = spec.Shape.Count > 0 || tensor.Shape.Length == 0;
            if (declared && (spec.Shape.Count != tensor.Shape.Length || spec.Shape.Where((d, j) => d.Value is long v && v != tensor.Shape[j]).Any()))
            {
                return $"input '{spec.Name}' has shape {Tensor.ShapeText(tensor.Shape)}, the model declares {spec.ShapeText}";
            }
        }

        return null;
    }

    private static bool IsNumeric(ElementType type) =>
        type is not (ElementType.Undefined or ElementType.String) && Enum.IsDefined(type);

    private static List<Tensor> ReadTensors(string dataSet, string prefix, IReadOnlyList<TensorSpec> specs)
    {
        var files = Directory.GetFiles(dataSet, prefix + "_*.pb");
        if (files.Length != specs.Count)
        {
            throw new BatchwiseException($"has {files.Length} {prefix}_*.pb files; the model has {specs.Count} {prefix}s", "Check the test data.");
        }

        var tensors = new List<Tensor>(specs.Count);
        for (var i = 0; i < specs.Count; i++)
        {
            var tensor = TensorProtos.ToTensor(TensorProtos.ReadFile(Path.Combine(dataSet, $"{prefix}_{i}.pb")));

            // ONNX's test generator stores bfloat16 data as uint16 arrays (numpy has no bfloat16): same bits.
            if (specs[i].ElementType == ElementType.BFloat16 && tensor.ElementType == ElementType.UInt16)
            {
                tensor = new Tensor(ElementType.BFloat16, tensor.Shape, tensor.Data);
            }

            tensors.Add(tensor);
        }

        return tensors;
    }
}
