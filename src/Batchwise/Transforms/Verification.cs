using Batchwise.Benchmarking;
using Batchwise.Comparison;
using Batchwise.Engines;
using Batchwise.Onnx;

namespace Batchwise.Transforms;

/// <summary>How closely one output of a transformed model follows the original on the same inputs.</summary>
/// <param name="Output">Output name.</param>
/// <param name="MaxAbsError">Largest absolute difference.</param>
/// <param name="MeanAbsError">Mean absolute difference.</param>
/// <param name="Cosine">Cosine similarity of the flattened outputs (1 = same direction).</param>
/// <param name="Top1Agreement">Share of rows whose arg-max agrees (classifier outputs [batch, classes]); null for other outputs.</param>
/// <param name="Problem">Why this output fails verification (cosine below the threshold, a dead output), or null.</param>
public sealed record OutputAgreement(string Output, double MaxAbsError, double MeanAbsError, double Cosine, double? Top1Agreement, string? Problem = null)
{
    /// <summary>True when the output passes verification.</summary>
    public bool Passed => Problem is null;
}

/// <summary>One model's speed at one batch size on ONNX Runtime CPU.</summary>
/// <param name="BatchSize">Samples per run.</param>
/// <param name="MedianMs">Median latency of one run, milliseconds.</param>
/// <param name="P90Ms">90th percentile latency, milliseconds.</param>
/// <param name="Runs">Measured runs (after warm-up).</param>
/// <param name="Error">Why it could not run at this batch size, when it could not.</param>
public sealed record SpeedPoint(long BatchSize, double MedianMs, double P90Ms, int Runs, string? Error = null)
{
    /// <summary>Samples per second at the median latency.</summary>
    public double Throughput => MedianMs > 0 ? BatchSize * 1000 / MedianMs : 0;
}

/// <summary>Verifies a transformed model against the original: output agreement on seeded inputs and a before/after timing on ONNX Runtime CPU.</summary>
public static class Verification
{
    /// <summary>Largest |value| of an output counted as all zero: such an output carries no signal to compare.</summary>
    public const double DeadMagnitude = 1e-5;

    /// <summary>Runs both models on the same seeded inputs (batch <paramref name="batchSize"/>, dynamic axes at the default size) and compares every output the two share; dead outputs are flagged, cosine is not judged.</summary>
    public static IReadOnlyList<OutputAgreement> Compare(OnnxModel original, OnnxModel result, long batchSize = 4, int seed = 42)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(result);
        return Compare(original, result, [SeededInputs.Create(result, BatchFor(original, BatchFor(result, batchSize)), seed)], minCosine: 0);
    }

    /// <summary>
    /// Runs both models on the same batches and compares every output over all of them. An output fails when its cosine
    /// similarity is below <paramref name="minCosine"/> (whatever the max error: a collapsed output can be close in
    /// absolute terms and still point elsewhere), or when it is dead (all ~0 or constant), in the original (then this data
    /// proves nothing) or only in the result.
    /// </summary>
    public static IReadOnlyList<OutputAgreement> Compare(OnnxModel original, OnnxModel result, IReadOnlyList<IReadOnlyList<Tensor>> batches, double minCosine)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(batches);
        var originalOutputs = original.Outputs;
        var expectedParts = originalOutputs.Select(_ => new List<Tensor>()).ToList();
        var actualParts = originalOutputs.Select(_ => new List<Tensor>()).ToList();
        using (var a = new OrtEngine().Load(original, new EngineOptions()))
        using (var b = new OrtEngine().Load(result, new EngineOptions()))
        {
            foreach (var inputs in batches)
            {
                var expected = a.Run(inputs.Select((t, i) => As(t, original.Inputs[i].ElementType)).ToList());
                var actual = b.Run(inputs.Select((t, i) => As(t, result.Inputs[i].ElementType)).ToList());
                for (var i = 0; i < expectedParts.Count && i < expected.Count && i < actual.Count; i++)
                {
                    expectedParts[i].Add(expected[i]);
                    actualParts[i].Add(actual[i]);
                }
            }
        }

        var agreements = new List<OutputAgreement>();
        for (var i = 0; i < originalOutputs.Count && i < result.Outputs.Count; i++)
        {
            var (expected, actual) = (Stack(expectedParts[i]), Stack(actualParts[i]));
            var c = TensorComparison.Compare(originalOutputs[i].Name, actual, expected, new Tolerance(1e-3, 1e-5));
            if (c.Problem is not null)
            {
                throw new BatchwiseException($"Output '{originalOutputs[i].Name}': {c.Problem}", "This transform must not change output shapes; report it as a bug.");
            }

            agreements.Add(new OutputAgreement(c.Name, c.MaxAbsError, c.MeanAbsError, c.Cosine, c.TopK?.Top1, Judge(expected, actual, c, minCosine)));
        }

        return agreements;
    }

    /// <summary>Why an output fails verification, or null: dead in the original or in the result, or a cosine below the threshold.</summary>
    internal static string? Judge(Tensor expected, Tensor actual, TensorComparison comparison, double minCosine)
    {
        if (Dead(expected) is { } deadOriginal)
        {
            return $"dead output: the original's is {deadOriginal} on this data, so agreement proves nothing (verify on real data with --calibration DIR)";
        }

        if (Dead(actual) is { } deadResult)
        {
            return $"dead output: the result's is {deadResult}, the original's is not";
        }

        if (double.IsNaN(comparison.Cosine))
        {
            return "the result has NaN or infinite values where the original does not";
        }

        return comparison.Cosine >= minCosine
            ? null
            : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"cosine {comparison.Cosine:F4} is below {minCosine} (max abs error {comparison.MaxAbsError:G3}): the output's direction changed");
    }

    /// <summary>"all ~0" or "constant" when a tensor carries no signal, else null.</summary>
    internal static string? Dead(Tensor t)
    {
        var v = t.ToDoubles();
        if (v.Length < 2)
        {
            return null;
        }

        double min = v.Min(), max = v.Max(), magnitude = Math.Max(Math.Abs(min), Math.Abs(max));
        return magnitude < DeadMagnitude ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"all ~0 (max |x| {magnitude:G2})")
            : max - min <= 1e-6 * magnitude ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"constant ({min:G4})")
            : null;
    }

    // Outputs of several batches as one tensor: stacked along the batch axis when their other dimensions agree, else flattened.
    private static Tensor Stack(List<Tensor> parts)
    {
        if (parts.Count == 1)
        {
            return parts[0];
        }

        var first = parts[0];
        var stackable = parts.All(p => p.ElementType == first.ElementType && p.Shape.Length == first.Shape.Length && p.Shape.Length > 0 && p.Shape.AsSpan(1).SequenceEqual(first.Shape.AsSpan(1)));
        var data = new byte[parts.Sum(p => p.Data.Length)];
        var offset = 0;
        foreach (var p in parts)
        {
            p.Data.CopyTo(data, offset);
            offset += p.Data.Length;
        }

        long[] shape = stackable ? [parts.Sum(p => p.Shape[0]), .. first.Shape[1..]] : [parts.Sum(p => p.ElementCount)];
        return new Tensor(first.ElementType, shape, data);
    }

    /// <summary>Times a model on ONNX Runtime CPU at each batch size: warm-up, then runs until <paramref name="secondsPerPoint"/> have passed (at least 5 runs).</summary>
    public static IReadOnlyList<SpeedPoint> Bench(OnnxModel model, IEnumerable<long> batchSizes, double secondsPerPoint = 1.0, EngineOptions? options = null, VerificationInputs? inputs = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batchSizes);
        var points = new List<SpeedPoint>();
        using var session = new OrtEngine().Load(model, options ?? new EngineOptions());
        var batchable = model.FindBatchAxis();
        foreach (var b in batchSizes)
        {
            if (!batchable.IsBatchable && b != BatchFor(model, b))
            {
                points.Add(new SpeedPoint(b, 0, 0, 0, $"fixed batch ({batchable.Reason})"));
                continue;
            }

            using var run = session.Prepare(inputs?.Seeded(model, b, seed: 1) ?? SeededInputs.Create(model, b, seed: 1));
            run.Run();
            run.Run();
            var samples = new List<double>();
            var start = System.Diagnostics.Stopwatch.GetTimestamp();
            while (samples.Count < 5 || (System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds < secondsPerPoint && samples.Count < 1000))
            {
                samples.Add(run.Run() * 1000);
            }

            var summary = Statistics.Summarize(samples);
            points.Add(new SpeedPoint(b, summary.P50, summary.P90, summary.Count));
        }

        return points;
    }

    /// <summary>
    /// Times the original and the result at each batch size with their runs interleaved (A, B, A, B, ...) after a warm-up of
    /// each, so that both see the same machine load: on a shared CPU, load that changes between two back-to-back benches
    /// would otherwise show up as a speed-up or a slow-down.
    /// </summary>
    public static (IReadOnlyList<SpeedPoint> Before, IReadOnlyList<SpeedPoint> After) BenchInterleaved(OnnxModel original, OnnxModel result, IEnumerable<long> batchSizes, double secondsPerPoint = 1.0, EngineOptions? options = null, VerificationInputs? inputs = null)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(batchSizes);
        var before = new List<SpeedPoint>();
        var after = new List<SpeedPoint>();
        using var a = new OrtEngine().Load(original, options ?? new EngineOptions());
        using var b = new OrtEngine().Load(result, options ?? new EngineOptions());
        foreach (var batch in batchSizes)
        {
            var runA = TryPrepare(original, a, batch, inputs, out var errorA);
            var runB = TryPrepare(result, b, batch, inputs, out var errorB);
            try
            {
                var samplesA = new List<double>();
                var samplesB = new List<double>();
                runA?.Run();
                runB?.Run();
                runA?.Run();
                runB?.Run();
                var start = System.Diagnostics.Stopwatch.GetTimestamp();
                while ((runA is not null || runB is not null)
                    && (Math.Max(samplesA.Count, samplesB.Count) < 5 || (System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds < 2 * secondsPerPoint && Math.Max(samplesA.Count, samplesB.Count) < 1000)))
                {
                    if (runA is not null)
                    {
                        samplesA.Add(runA.Run() * 1000);
                    }

                    if (runB is not null)
                    {
                        samplesB.Add(runB.Run() * 1000);
                    }
                }

                before.Add(Point(batch, samplesA, errorA));
                after.Add(Point(batch, samplesB, errorB));
            }
            finally
            {
                runA?.Dispose();
                runB?.Dispose();
            }
        }

        return (before, after);
    }

    private static IPreparedRun? TryPrepare(OnnxModel model, IEngineSession session, long batch, VerificationInputs? inputs, out string? error)
    {
        var axis = model.FindBatchAxis();
        if (!axis.IsBatchable && batch != BatchFor(model, batch))
        {
            error = $"fixed batch ({axis.Reason})";
            return null;
        }

        error = null;
        return session.Prepare(inputs?.Seeded(model, batch, seed: 1) ?? SeededInputs.Create(model, batch, seed: 1));
    }

    private static SpeedPoint Point(long batch, List<double> samples, string? error)
    {
        if (error is not null || samples.Count == 0)
        {
            return new SpeedPoint(batch, 0, 0, 0, error ?? "not run");
        }

        var summary = Statistics.Summarize(samples);
        return new SpeedPoint(batch, summary.P50, summary.P90, summary.Count);
    }

    // The same values in another float type (a float16-input result is compared with its float32 original on identical data).
    private static Tensor As(Tensor t, ElementType type)
    {
        if (t.ElementType == type || !t.ElementType.IsFloatingPoint() || !type.IsFloatingPoint())
        {
            return t;
        }

        var values = t.ToDoubles();
        return type switch
        {
            ElementType.Float => Tensor.From<float>(type, t.Shape, Array.ConvertAll(values, v => (float)v)),
            ElementType.Float16 => Tensor.From<Half>(type, t.Shape, Array.ConvertAll(values, v => (Half)v)),
            ElementType.Double => Tensor.From<double>(type, t.Shape, values),
            _ => t,
        };
    }

    private static long BatchFor(OnnxModel model, long batchSize) =>
        model.Inputs.FirstOrDefault()?.Shape.FirstOrDefault() is { Value: { } fixedBatch } ? fixedBatch : batchSize;
}
