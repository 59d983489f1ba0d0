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
public sealed record OutputAgreement(string Output, double MaxAbsError, double MeanAbsError, double Cosine, double? Top1Agreement);

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
    /// <summary>Runs both models on the same seeded inputs (batch <paramref name="batchSize"/>) and compares every output the two share.</summary>
    public static IReadOnlyList<OutputAgreement> Compare(OnnxModel original, OnnxModel result, long batchSize = 4, int seed = 42)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(result);
        var inputs = SeededInputs.Create(result, BatchFor(original, BatchFor(result, batchSize)), seed);
        IReadOnlyList<Tensor> expected, actual;
        using (var session = new OrtEngine().Load(original, new EngineOptions()))
        {
            expected = session.Run(inputs.Select((t, i) => As(t, original.Inputs[i].ElementType)).ToList());
        }

        using (var session = new OrtEngine().Load(result, new EngineOptions()))
        {
            actual = session.Run(inputs);
        }

        var agreements = new List<OutputAgreement>();
        var originalOutputs = original.Outputs;
        for (var i = 0; i < actual.Count && i < expected.Count; i++)
        {
            var c = TensorComparison.Compare(originalOutputs[i].Name, actual[i], expected[i], new Tolerance(1e-3, 1e-5));
            if (c.Problem is not null)
            {
                throw new BatchwiseException($"Output '{originalOutputs[i].Name}': {c.Problem}", "This transform must not change output shapes; report it as a bug.");
            }

            agreements.Add(new OutputAgreement(c.Name, c.MaxAbsError, c.MeanAbsError, c.Cosine, c.TopK?.Top1));
        }

        return agreements;
    }

    /// <summary>Times a model on ONNX Runtime CPU at each batch size: warm-up, then runs until <paramref name="secondsPerPoint"/> have passed (at least 5 runs).</summary>
    public static IReadOnlyList<SpeedPoint> Bench(OnnxModel model, IEnumerable<long> batchSizes, double secondsPerPoint = 1.0, EngineOptions? options = null)
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

            using var run = session.Prepare(SeededInputs.Create(model, b, seed: 1));
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
    public static (IReadOnlyList<SpeedPoint> Before, IReadOnlyList<SpeedPoint> After) BenchInterleaved(OnnxModel original, OnnxModel result, IEnumerable<long> batchSizes, double secondsPerPoint = 1.0, EngineOptions? options = null)
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
            var runA = TryPrepare(original, a, batch, out var errorA);
            var runB = TryPrepare(result, b, batch, out var errorB);
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

    private static IPreparedRun? TryPrepare(OnnxModel model, IEngineSession session, long batch, out string? error)
    {
        var axis = model.FindBatchAxis();
        if (!axis.IsBatchable && batch != BatchFor(model, batch))
        {
            error = $"fixed batch ({axis.Reason})";
            return null;
        }

        error = null;
        return session.Prepare(SeededInputs.Create(model, batch, seed: 1));
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
